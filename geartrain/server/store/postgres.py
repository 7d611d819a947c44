"""Background jobs in PostgreSQL, in gearmand's libpq layout (asyncpg).

Table (gearmand's, default name ``queue``)::

    unique_key VARCHAR(64), function_name VARCHAR(255), priority INTEGER, data BYTEA,
    when_to_run INTEGER, UNIQUE (unique_key, function_name)

plus one nullable column ``geartrain_extra BYTEA`` (see common.py), added to an existing gearmand
table on open (gearmand names its columns, so it never sees it). A batch of adds is one statement
(a binary ``COPY`` whose data is built straight from the jobs' bytes, or for small batches and where
a key exists already ``INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO UPDATE``), a batch of
dones one ``DELETE ... USING unnest(arrays)``, each its own transaction.

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

from .base import StoredJob, StoreError
from .common import (
    INT32_MAX,
    ConnectedStore,
    Names,
    is_text,
    job_from_row,
    last_wins,
    needs_generated_key,
    plain_batch,
    sql_row,
)

DEFAULT_TABLE = "queue"
_COLUMNS = ("unique_key", "function_name", "priority", "data", "when_to_run", "geartrain_extra")
#: batches at least this big go in with COPY (cheaper per row, one more round trip to set up)
_COPY_MIN = 64

#: (key, function, the function's COPY field, priority, data, when_to_run, geartrain_extra) of one job
Row = tuple[bytes, bytes, bytes, int, bytes, int, bytes | None]

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
    """ROWS in PostgreSQL's binary COPY format, built from the bytes we hold (text columns are sent as
    their UTF-8 bytes, which the row check made sure they are): no str per value, no codec per field."""
    parts = [_COPY_HEADER]
    add = parts.extend
    for key, _, function, priority, data, when, extra in rows:
        add((_FIELDS_KEY(6, len(key)), key, function, _PRIORITY.get(priority) or _INT_FIELD(4, priority),
             _LENGTH(len(data)), data,
             _INT_FIELD(4, when) if when else _WHEN_NOW,
             _NULL if extra is None else _LENGTH(len(extra)) + extra))
    parts.append(_COPY_TRAILER)
    return b"".join(parts)


def _arrays(rows: list[Row]) -> tuple[list, ...]:
    """ROWS as the upsert's column arrays."""
    return ([r[0].decode() for r in rows], [r[1].decode() for r in rows], [r[3] for r in rows],
            [r[4] for r in rows], [r[5] for r in rows], [r[6] for r in rows])


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
            f"INSERT INTO {t} (unique_key, function_name, priority, data, when_to_run, geartrain_extra) "
            "SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::int4[], $4::bytea[], $5::int4[], $6::bytea[]) "
            "ON CONFLICT (unique_key, function_name) DO UPDATE SET priority = EXCLUDED.priority, "
            "data = EXCLUDED.data, when_to_run = EXCLUDED.when_to_run, geartrain_extra = EXCLUDED.geartrain_extra")
        self._delete = (f"DELETE FROM {t} q USING unnest($1::varchar[], $2::varchar[]) AS d(u, f) "
                        "WHERE q.unique_key = d.u AND q.function_name = d.f")
        self._select = f"SELECT unique_key, function_name, priority, data, when_to_run, geartrain_extra FROM {t}"

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
            await conn.execute(f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS geartrain_extra BYTEA")
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
                    await conn.copy_to_table(self.table_name, schema_name=self.schema, columns=_COLUMNS,
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
                    or not (unique.isascii() and b"\0" not in unique)):
                key, when, extra = sql_row(job, is_text, INT32_MAX)
                rows.append((key, function, names[function], job.priority, job.data, when, extra))
            else:  # the common case, kept cheap
                rows.append((unique, function, names[function], job.priority, job.data, 0, None))
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
                        yield [job_from_row(_enc(u), names(_enc(f)), p, d, w, x) for u, f, p, d, w, x in rows]
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                await self._drop()
                raise StoreError(f"postgres: replay failed: {exc}") from exc


def _enc(text: str | None) -> bytes:
    return text.encode() if text is not None else b""


async def _noop(conn: Any) -> Any:
    return conn
