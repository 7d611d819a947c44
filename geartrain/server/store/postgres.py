"""Background jobs in PostgreSQL, in gearmand's libpq layout (asyncpg).

Table (gearmand's, default name ``queue``)::

    unique_key VARCHAR(64), function_name VARCHAR(255), priority INTEGER, data BYTEA,
    when_to_run INTEGER, UNIQUE (unique_key, function_name)

plus two nullable columns ``geartrain_extra BYTEA`` and ``geartrain_retry BYTEA`` (see common.py),
added to an existing gearmand (or older geartrain) table on open (gearmand names its columns, so it
never sees them). Beside it, created on open (gearmand never reads them)::

    <table>_results  (handle BYTEA PRIMARY KEY, function_name BYTEA, unique_key BYTEA, outcome TEXT,
                      data BYTEA, ended DOUBLE PRECISION, expires DOUBLE PRECISION, tries INTEGER)
    <table>_failed   (id BIGINT PRIMARY KEY, handle BYTEA, function_name BYTEA NOT NULL, unique_key BYTEA,
                      data BYTEA, data_size BIGINT, priority INTEGER, background BOOLEAN,
                      failed_at DOUBLE PRECISION, history BYTEA)
    <table>_policies (function_name BYTEA PRIMARY KEY, policy TEXT NOT NULL)

A batch of adds is one statement (a binary ``COPY`` whose data is built straight from the jobs' bytes,
or for small batches and where a key exists already ``INSERT ... SELECT FROM unnest(arrays) ON
CONFLICT DO UPDATE``), a batch of dones one ``DELETE ... USING unnest(arrays)``, any other settlement
one statement of data-modifying CTEs (one per kind of write, each on arrays), each its own
transaction.

unique_key and function_name are text columns: a unique that is not UTF-8 (or holds a NUL) is
filed under a generated key with the real bytes in geartrain_extra; such a function name is refused
with StoreError (QUEUE_ERROR to the submitter).
"""

from __future__ import annotations

import re
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from .base import Extras, Settlement, StoredJob, StoreError
from .common import (
    INT32_MAX,
    ConnectedStore,
    Names,
    extras_from_rows,
    failed_row,
    is_text,
    job_from_row,
    job_retry,
    kept_row,
    last_wins,
    needs_generated_key,
    plain_batch,
    retry_row,
    sql_row,
)

DEFAULT_TABLE = "queue"
_COLUMNS = ("unique_key", "function_name", "priority", "data", "when_to_run", "geartrain_extra")
_COLUMNS_RETRY = (*_COLUMNS, "geartrain_retry")
#: batches at least this big go in with COPY (cheaper per row, one more round trip to set up)
_COPY_MIN = 64
#: the tables beside the queue: name suffix -> its columns after CREATE TABLE name
_SIDE_TABLES = {
    "_results": "(handle BYTEA PRIMARY KEY, function_name BYTEA, unique_key BYTEA, outcome TEXT, data BYTEA, "
                "ended DOUBLE PRECISION, expires DOUBLE PRECISION, tries INTEGER)",
    "_failed": "(id BIGINT PRIMARY KEY, handle BYTEA, function_name BYTEA NOT NULL, unique_key BYTEA, data BYTEA, "
               "data_size BIGINT, priority INTEGER, background BOOLEAN, failed_at DOUBLE PRECISION, history BYTEA)",
    "_policies": "(function_name BYTEA PRIMARY KEY, policy TEXT NOT NULL)",
}
_RESULT_COLUMNS = "handle, function_name, unique_key, outcome, data, ended, expires, tries"
_FAILED_COLUMNS = "id, handle, function_name, unique_key, data, data_size, priority, background, failed_at, history"

#: (key, function, the function's COPY field, priority, data, when_to_run, geartrain_extra, geartrain_retry)
Row = tuple[bytes, bytes, bytes, int, bytes, int, bytes | None, bytes | None]

_LENGTH = struct.Struct(">i").pack
_FIELDS_KEY = struct.Struct(">hi").pack  # a binary COPY tuple's field count, then the key's length
_INT_FIELD = struct.Struct(">ii").pack  # length 4, an int4
_NULL = b"\xff\xff\xff\xff"
_WHEN_NOW = _INT_FIELD(4, 0)
_NOW_NO_EXTRA = _WHEN_NOW + _NULL  # when_to_run 0, geartrain_extra NULL
_PRIORITY = {p: _INT_FIELD(4, p) for p in (0, 1, 2)}
#: PostgreSQL's binary COPY framing: signature, flags, header extension length; -1 field count to end
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = b"\xff\xff"


def _copy_plain(jobs: Sequence[StoredJob]) -> bytes | None:
    """The common batch in binary COPY format: every job has a distinct plain ASCII unique
    and nothing else to keep (no generated key, run-at time, reducer or schedule). None if not: then
    _rows and _copy_data handle the batch."""
    if not plain_batch(jobs):  # a generated key, an extra record, or a key twice (the last add must win)
        return None
    joined = b"".join([job.unique for job in jobs])
    if not joined.isascii() or b"\0" in joined:
        return None
    parts = [_COPY_HEADER]
    add = parts.extend
    names: dict[bytes, bytes] = {}
    for job in jobs:
        function = job.function
        name = names.get(function)
        if name is None:
            if not is_text(function):
                return None
            name = names[function] = _LENGTH(len(function)) + function
        unique = job.unique
        data = job.data
        add((_FIELDS_KEY(6, len(unique)), unique, name, _PRIORITY.get(job.priority) or _INT_FIELD(4, job.priority),
             _LENGTH(len(data)), data, _NOW_NO_EXTRA))
    parts.append(_COPY_TRAILER)
    return b"".join(parts)


def _copy_data(rows: list[Row]) -> bytes:
    """ROWS in PostgreSQL's binary COPY format (the columns _COLUMNS_RETRY), built from the bytes we hold
    (text columns are sent as their UTF-8 bytes, which the row check made sure they are): no str per
    value, no codec per field."""
    parts = [_COPY_HEADER]
    add = parts.extend
    for key, _, function, priority, data, when, extra, retry in rows:
        add((_FIELDS_KEY(7, len(key)), key, function, _PRIORITY.get(priority) or _INT_FIELD(4, priority),
             _LENGTH(len(data)), data,
             _INT_FIELD(4, when) if when else _WHEN_NOW,
             _NULL if extra is None else _LENGTH(len(extra)) + extra,
             _NULL if retry is None else _LENGTH(len(retry)) + retry))
    parts.append(_COPY_TRAILER)
    return b"".join(parts)


def _arrays(rows: list[Row]) -> tuple[list, ...]:
    """ROWS as the upsert's column arrays."""
    return ([r[0].decode() for r in rows], [r[1].decode() for r in rows], [r[3] for r in rows],
            [r[4] for r in rows], [r[5] for r in rows], [r[6] for r in rows], [r[7] for r in rows])


def _settle_args(batch: Settlement) -> list[list]:
    """BATCH as the arrays of the settle statement, in its parameter order (keys that are not text were
    never stored: see _deleter)."""
    done = [(u.decode(), f.decode()) for u, f in batch.done if is_text(u) and is_text(f)]
    retried = [(r.key[0].decode(), r.key[1].decode(), *retry_row(r, INT32_MAX))
               for r in last_wins(batch.retried, lambda r: r.key) if is_text(r.key[0]) and is_text(r.key[1])]
    kept = [kept_row(r) for r in last_wins(batch.kept, lambda r: r.handle)]
    buried = [(*row[:7], bool(row[7]), *row[8:]) for row in map(failed_row, last_wins(batch.buried, lambda f: f.id))]
    policies = [(f, text) for f, text in batch.policies.items() if text]
    return [*_columns(done, 2), *_columns(retried, 4), *_columns(kept, 8), list(batch.unkept),
            *_columns(buried, 10), list(batch.unburied), *_columns(policies, 2),
            [f for f, text in batch.policies.items() if not text]]


def _columns(rows: list, width: int) -> list[list]:
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


def name_parts(name: str) -> list[str]:
    """A table name, optionally schema-qualified, as PostgreSQL resolves it when gearmand writes it
    unquoted: plain identifiers fold to lower case."""
    return [part.lower() if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", part) else part for part in name.split(".")]


def quote_ident(name: str) -> str:
    """A table name, optionally schema-qualified, quoted for SQL (naming what gearmand's unquoted name names)."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name_parts(name))


def parse_conninfo(conninfo: str) -> dict[str, Any]:
    """libpq's ``key=value ...`` connection string (gearmand's --libpq-conninfo) as asyncpg arguments."""
    if re.match(r"^postgres(ql)?://", conninfo):
        return {"dsn": conninfo}
    pairs: dict[str, str] = {}
    pattern = re.compile(r"\s*(\w+)\s*=\s*('((?:[^'\\]|\\.)*)'|\S+)")
    pos = 0
    conninfo = conninfo.strip()
    while pos < len(conninfo):
        m = pattern.match(conninfo, pos)
        if not m:
            raise ValueError(f"cannot parse libpq conninfo at {conninfo[pos:]!r}")
        value = m.group(3) if m.group(3) is not None else m.group(2)
        pairs[m.group(1)] = re.sub(r"\\(.)", r"\1", value) if m.group(3) is not None else value
        pos = m.end()
        while pos < len(conninfo) and conninfo[pos].isspace():
            pos += 1
    out: dict[str, Any] = {}
    for key, value in pairs.items():
        if key in ("host", "hostaddr"):
            out["host"] = value
        elif key == "port":
            out["port"] = int(value)
        elif key == "user":
            out["user"] = value
        elif key == "password":
            out["password"] = value
        elif key == "dbname":
            out["database"] = value
        elif key == "sslmode":
            out["ssl"] = value
        elif key == "connect_timeout":
            out["timeout"] = float(value)
        elif key == "application_name":
            out.setdefault("server_settings", {})["application_name"] = value
    return out


class PostgresStore(ConnectedStore):
    """Background jobs in a PostgreSQL table."""

    name = "postgres"

    def __init__(self, connect: dict[str, Any], table: str = DEFAULT_TABLE) -> None:
        super().__init__()
        self.connect_args = dict(connect)
        self.table = table
        parts = name_parts(table)
        self.table_name = parts[-1]
        self.schema = ".".join(parts[:-1]) or None
        t = quote_ident(table)
        self._insert = (
            f"INSERT INTO {t} ({', '.join(_COLUMNS_RETRY)}) "
            "SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::int4[], $4::bytea[], $5::int4[], $6::bytea[], "
            "$7::bytea[]) "
            "ON CONFLICT (unique_key, function_name) DO UPDATE SET priority = EXCLUDED.priority, "
            "data = EXCLUDED.data, when_to_run = EXCLUDED.when_to_run, geartrain_extra = EXCLUDED.geartrain_extra, "
            "geartrain_retry = EXCLUDED.geartrain_retry")
        self._delete = (f"DELETE FROM {t} q USING unnest($1::varchar[], $2::varchar[]) AS d(u, f) "
                        "WHERE q.unique_key = d.u AND q.function_name = d.f")
        self._select = f"SELECT {', '.join(_COLUMNS_RETRY)} FROM {t}"
        self._side = {suffix: quote_ident(table + suffix) for suffix in _SIDE_TABLES}
        r, f, p = self._side.values()
        # every kind of write of a settlement in one statement (one transaction, one round trip); the
        # arrays of the kinds a settlement lacks are empty
        self._settle = (
            f"WITH d AS (DELETE FROM {t} q USING unnest($1::varchar[], $2::varchar[]) AS x(u, f) "
            "WHERE q.unique_key = x.u AND q.function_name = x.f), "
            f"r AS (UPDATE {t} q SET when_to_run = x.w, geartrain_retry = x.r "
            "FROM unnest($3::varchar[], $4::varchar[], $5::int4[], $6::bytea[]) AS x(u, f, w, r) "
            "WHERE q.unique_key = x.u AND q.function_name = x.f), "
            f"k AS (INSERT INTO {r} ({_RESULT_COLUMNS}) SELECT * FROM unnest($7::bytea[], $8::bytea[], $9::bytea[], "
            "$10::text[], $11::bytea[], $12::float8[], $13::float8[], $14::int4[]) ON CONFLICT (handle) DO UPDATE SET "
            "function_name = EXCLUDED.function_name, unique_key = EXCLUDED.unique_key, outcome = EXCLUDED.outcome, "
            "data = EXCLUDED.data, ended = EXCLUDED.ended, expires = EXCLUDED.expires, tries = EXCLUDED.tries), "
            f"uk AS (DELETE FROM {r} WHERE handle = ANY($15::bytea[])), "
            f"b AS (INSERT INTO {f} ({_FAILED_COLUMNS}) SELECT * FROM unnest($16::int8[], $17::bytea[], $18::bytea[], "
            "$19::bytea[], $20::bytea[], $21::int8[], $22::int4[], $23::bool[], $24::float8[], $25::bytea[]) "
            "ON CONFLICT (id) DO UPDATE SET handle = EXCLUDED.handle, function_name = EXCLUDED.function_name, "
            "unique_key = EXCLUDED.unique_key, data = EXCLUDED.data, data_size = EXCLUDED.data_size, "
            "priority = EXCLUDED.priority, background = EXCLUDED.background, failed_at = EXCLUDED.failed_at, "
            "history = EXCLUDED.history), "
            f"ub AS (DELETE FROM {f} WHERE id = ANY($26::int8[])), "
            f"p AS (INSERT INTO {p} (function_name, policy) SELECT * FROM unnest($27::bytea[], $28::text[]) "
            "ON CONFLICT (function_name) DO UPDATE SET policy = EXCLUDED.policy), "
            f"up AS (DELETE FROM {p} WHERE function_name = ANY($29::bytea[])) "
            "SELECT 1")
        self._expire = f"DELETE FROM {r} WHERE expires <= $1"
        self._read = (f"SELECT {_RESULT_COLUMNS} FROM {r} WHERE expires > $1",
                      f"SELECT {_FAILED_COLUMNS} FROM {f} ORDER BY id",
                      f"SELECT function_name, policy FROM {p}")

    def _describe(self) -> str:
        args = self.connect_args
        if "dsn" in args:
            where = re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:***@", args["dsn"])
        else:
            where = f"{args.get('host', 'localhost')}:{args.get('port', 5432)}/{args.get('database', '')}"
        return f"{where} table {self.table}"

    async def _connect(self) -> asyncpg.Connection:
        args = {"timeout": self.connect_timeout, **self.connect_args}
        conn = await asyncpg.connect(**args)
        try:
            t = quote_ident(self.table)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {t} (unique_key VARCHAR(64), function_name VARCHAR(255), "
                "priority INTEGER, data BYTEA, when_to_run INTEGER, UNIQUE (unique_key, function_name))")
            # a table of gearmand's or of an older geartrain gets what it lacks; the tables beside it too
            await conn.execute(f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS geartrain_extra BYTEA, "
                               "ADD COLUMN IF NOT EXISTS geartrain_retry BYTEA; "
                               + "; ".join(f"CREATE TABLE IF NOT EXISTS {self._side[suffix]} {columns}"
                                           for suffix, columns in _SIDE_TABLES.items()))
            self._ins = await conn.prepare(self._insert)
            self._del = await conn.prepare(self._delete)
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def _close_conn(self, conn: asyncpg.Connection) -> None:
        try:
            await conn.close(timeout=1.0)
        except Exception:  # noqa: BLE001
            conn.terminate()

    def _is_full(self, exc: BaseException) -> bool:
        return isinstance(exc, asyncpg.DiskFullError | asyncpg.OutOfMemoryError)

    def _is_connection_error(self, exc: BaseException, conn: asyncpg.Connection) -> bool:
        return (conn.is_closed() or isinstance(exc, OSError | ConnectionError | asyncpg.PostgresConnectionError
                                               | asyncpg.InterfaceError | asyncpg.AdminShutdownError
                                               | asyncpg.CannotConnectNowError))

    # -- the interface ---------------------------------------------------------------------

    async def add(self, jobs: Sequence[StoredJob]) -> None:
        if not jobs:
            return
        rows: list[Row] | None = None
        data = _copy_plain(jobs) if len(jobs) >= _COPY_MIN else None
        if data is None:
            rows = self._rows(jobs)
            if len(rows) >= _COPY_MIN:
                data = _copy_data(rows)

        async def op(conn: asyncpg.Connection) -> None:
            if data is not None:
                # binary COPY straight from our bytes is the fastest way in; a row that exists already
                # (rare: the server coalesces live jobs) makes it fail as a whole, and the upsert below
                # does the batch instead.
                try:
                    await conn.copy_to_table(self.table_name, schema_name=self.schema,
                                             columns=_COLUMNS if rows is None else _COLUMNS_RETRY,
                                             source=memoryview(data), format="binary")
                    return
                except asyncpg.UniqueViolationError:
                    pass
            await self._ins.fetch(*_arrays(rows if rows is not None else self._rows(jobs)))

        await self._call("add", op, writes=jobs)

    @staticmethod
    def _rows(jobs: Sequence[StoredJob]) -> list[Row]:
        """JOBS as rows of the table, the last of each key only; StoreError if a function name cannot be text."""
        rows: list[Row] = []
        names: dict[bytes, bytes] = {}  # function name -> its COPY field, once it passed the text check
        for job in jobs:
            function = job.function
            if function not in names:
                if not is_text(function):
                    raise StoreError("postgres: function names must be UTF-8 without NUL in gearmand's table")
                names[function] = _LENGTH(len(function)) + function
            unique = job.unique
            if (job.store_key or job.reducer or job.schedule or job.when or needs_generated_key(unique)
                    or not (unique.isascii() and b"\0" not in unique) or job.tries or job.history):
                key, when, extra = sql_row(job, is_text, INT32_MAX)
                rows.append((key, function, names[function], job.priority, job.data, when, extra, job_retry(job)))
            else:  # the common case, kept cheap
                rows.append((unique, function, names[function], job.priority, job.data, 0, None, None))
        if len(names) == 1:
            distinct = len(set([row[0] for row in rows]))
        else:
            distinct = len(set([(row[0], row[1]) for row in rows]))
        if distinct != len(rows):  # one statement may not touch a row twice: the last add of a key wins
            rows = list(last_wins(rows, lambda r: (r[0], r[1])))
        return rows

    async def _ping(self, conn: asyncpg.Connection) -> None:
        await conn.fetchval("SELECT 1")

    def _deleter(self, keys: Sequence[tuple[bytes, bytes]]) -> Callable[[Any], Awaitable[Any]] | None:
        pairs = [(u.decode(), f.decode()) for u, f in keys if is_text(u) and is_text(f)]
        if not pairs:
            return None  # a key that is not text was never stored (refused, or filed under a generated key)
        uniques = [u for u, _ in pairs]
        functions = [f for _, f in pairs]

        async def op(conn: asyncpg.Connection) -> None:
            await self._del.fetch(uniques, functions)

        return op

    def _settler(self, batch: Settlement) -> Callable[[Any], Awaitable[Any]]:
        args = _settle_args(batch)

        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute(self._settle, *args)

        return op

    async def _read_extras(self, conn: asyncpg.Connection, now: float) -> Extras:
        try:
            await conn.execute(self._expire, now)
        except Exception as exc:  # noqa: BLE001 - only for want of room, said below
            if not self._is_full(exc):
                raise  # (with no room they stay: they are not read)
        results, failed, policies = self._read
        async with conn.transaction(readonly=True):
            rows = [await conn.fetch(results, now), await conn.fetch(failed), await conn.fetch(policies)]
        return extras_from_rows(*rows)

    async def replay_batches(self, size: int = 10_000) -> AsyncIterator[list[StoredJob]]:
        # One read-only transaction with a server-side cursor: memory stays at one batch.
        conn = await self._call("replay", lambda c: _noop(c))
        names = Names()
        async with self._lock:
            try:
                async with conn.transaction(readonly=True):
                    cursor = await conn.cursor(self._select)
                    while True:
                        rows = await cursor.fetch(size)
                        if not rows:
                            break
                        yield [job_from_row(_enc(u), names(_enc(f)), p, d, w, x, r) for u, f, p, d, w, x, r in rows]
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                await self._drop()
                raise StoreError(f"postgres: replay failed: {exc}") from exc


def _enc(text: str | None) -> bytes:
    return text.encode() if text is not None else b""


async def _noop(conn: Any) -> Any:
    return conn
