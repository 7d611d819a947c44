"""Background jobs in MySQL or MariaDB, in gearmand's MySQL layout (asyncmy).

Table (gearmand's, default name ``gearman_queue``)::

    unique_key VARCHAR(64), function_name VARCHAR(255), priority INT, data LONGBLOB,
    when_to_run INT, UNIQUE KEY (unique_key, function_name)

plus two nullable columns ``geartrain_extra LONGBLOB`` and ``geartrain_retry LONGBLOB`` (see common.py),
added to an existing table (gearmand's, or an older geartrain's) on open; gearmand names its columns,
so it never reads them. When geartrain creates the table it uses
VARBINARY(64)/VARBINARY(255) for the two key columns (gearmand reads and writes them just the
same): byte-exact and case-sensitive, as gearmand compares uniques in memory — a VARCHAR key under
a case-insensitive collation would make ``abc`` and ``ABC`` one job. It also makes the key the
table's PRIMARY KEY (NOT NULL; gearmand always writes both): InnoDB then keeps the rows in that one
B-tree, where gearmand's UNIQUE KEY on nullable columns means a hidden row id as the clustered index
plus the unique key as a second B-tree, two index inserts per job (MariaDB spends about 2.5 instead
of 4 us of CPU per job added). On a gearmand-made VARCHAR table a unique that is not UTF-8 goes
under a generated key (real bytes in geartrain_extra) and such a function name is refused with
StoreError.

Beside it, created on open (gearmand never reads them)::

    <table>_results  (handle VARBINARY(1024) PRIMARY KEY, function_name LONGBLOB, unique_key LONGBLOB,
                      outcome VARCHAR(32), data LONGBLOB, ended DOUBLE, expires DOUBLE, tries INT)
    <table>_failed   (id BIGINT PRIMARY KEY, handle LONGBLOB, function_name LONGBLOB NOT NULL, unique_key LONGBLOB,
                      data LONGBLOB, data_size BIGINT, priority INT, background TINYINT, failed_at DOUBLE,
                      history LONGBLOB)
    <table>_policies (function_name VARBINARY(1024) PRIMARY KEY, policy TEXT NOT NULL)

A batch of adds is one ``INSERT ... ON DUPLICATE KEY UPDATE``: on MariaDB a prepared statement run
with its bulk execute (the rows go in binary, with no escaping and no SQL text to parse: a third of
the time of the text protocol for our process and less for the server), elsewhere one multi-row
statement. A batch of dones is one ``DELETE ... WHERE function_name = f AND unique_key IN (...)``
per function; any other settlement one statement per kind of write (an UPDATE per retried job), each
batch one InnoDB transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import asyncmy
from asyncmy.cursors import SSCursor
from asyncmy.errors import InterfaceError, InternalError, OperationalError

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
    plain_batch,
    retry_row,
    sql_row,
)

DEFAULT_TABLE = "gearman_queue"
#: MySQL/MariaDB error numbers that mean the connection is gone
_GONE = {2003, 2006, 2013, 2055, 1053, 1077, 1152, 1927, 4031}
#: error numbers that mean no room: ER_DISK_FULL, ER_OUT_OF_RESOURCES, ER_RECORD_FILE_FULL ("the table is full")
_FULL = {1021, 1041, 1114}
_ER_GET_ERRNO = 1030  # "Got error N from storage engine"
_DELETE_CHUNK = 1000
#: batches at least this big go in with MariaDB's bulk execute, in pieces of about this many bytes
_BULK_MIN = 16
_BULK_BYTES = 1 << 20
_COLUMNS = "unique_key, function_name, priority, data, when_to_run, geartrain_extra, geartrain_retry"
#: the tables beside the queue: name suffix -> its columns after CREATE TABLE name
_SIDE_TABLES = {
    "_results": "(handle VARBINARY(1024) NOT NULL PRIMARY KEY, function_name LONGBLOB, unique_key LONGBLOB, "
                "outcome VARCHAR(32), data LONGBLOB, ended DOUBLE, expires DOUBLE, tries INT) ENGINE=InnoDB",
    "_failed": "(id BIGINT NOT NULL PRIMARY KEY, handle LONGBLOB, function_name LONGBLOB NOT NULL, "
               "unique_key LONGBLOB, data LONGBLOB, data_size BIGINT, priority INT, background TINYINT, "
               "failed_at DOUBLE, history LONGBLOB) ENGINE=InnoDB",
    "_policies": "(function_name VARBINARY(1024) NOT NULL PRIMARY KEY, policy TEXT NOT NULL) ENGINE=InnoDB",
}
_RESULT_COLUMNS = "handle, function_name, unique_key, outcome, data, ended, expires, tries"
_FAILED_COLUMNS = "id, handle, function_name, unique_key, data, data_size, priority, background, failed_at, history"


def quote_ident(name: str) -> str:
    return ".".join("`" + part.replace("`", "``") + "`" for part in name.split("."))


class MySQLStore(ConnectedStore):
    """Background jobs in a MySQL/MariaDB table."""

    name = "mysql"

    def __init__(self, connect: dict[str, Any], table: str = DEFAULT_TABLE) -> None:
        super().__init__()
        self.connect_args = dict(connect)
        self.table = table
        self._binary_keys = True
        t = quote_ident(table)
        self._insert = (f"INSERT INTO {t} ({_COLUMNS}) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE priority = VALUES(priority), "
                        "data = VALUES(data), when_to_run = VALUES(when_to_run), "
                        "geartrain_extra = VALUES(geartrain_extra), geartrain_retry = VALUES(geartrain_retry)")
        # for MariaDB's bulk execute, as prepared statements, with and without the extra column (a column of
        # a bulk execute may not be NULL in every row); batches with a retry record take the one above
        self._bulk_sql = (
            f"INSERT INTO {t} (unique_key, function_name, priority, data, when_to_run, geartrain_extra) "
            "VALUES (?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE priority = VALUES(priority), data = VALUES(data), "
            "when_to_run = VALUES(when_to_run), geartrain_extra = VALUES(geartrain_extra), geartrain_retry = NULL",
            f"INSERT INTO {t} (unique_key, function_name, priority, data, when_to_run) "
            "VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE priority = VALUES(priority), data = VALUES(data), "
            "when_to_run = VALUES(when_to_run), geartrain_extra = NULL, geartrain_retry = NULL")
        self._bulk: tuple[Any, Any] | None = None  # those statements, prepared on the connection
        self._delete = f"DELETE FROM {t} WHERE function_name = %s AND unique_key IN ("
        self._retry = (f"UPDATE {t} SET when_to_run = %s, geartrain_retry = %s "
                       "WHERE unique_key = %s AND function_name = %s")
        self._select = f"SELECT {_COLUMNS} FROM {t}"
        self._side = {suffix: quote_ident(table + suffix) for suffix in _SIDE_TABLES}
        r, f, p = self._side.values()
        self._keep = (f"INSERT INTO {r} ({_RESULT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                      "ON DUPLICATE KEY UPDATE function_name = VALUES(function_name), unique_key = VALUES(unique_key), "
                      "outcome = VALUES(outcome), data = VALUES(data), ended = VALUES(ended), "
                      "expires = VALUES(expires), tries = VALUES(tries)")
        self._bury = (f"INSERT INTO {f} ({_FAILED_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                      "ON DUPLICATE KEY UPDATE handle = VALUES(handle), function_name = VALUES(function_name), "
                      "unique_key = VALUES(unique_key), data = VALUES(data), data_size = VALUES(data_size), "
                      "priority = VALUES(priority), background = VALUES(background), failed_at = VALUES(failed_at), "
                      "history = VALUES(history)")
        self._set_policy = (f"INSERT INTO {p} (function_name, policy) VALUES (%s, %s) "
                            "ON DUPLICATE KEY UPDATE policy = VALUES(policy)")
        #: DELETE ... WHERE column IN ( of the side tables, by what settle() deletes
        self._side_delete = {"unkept": f"DELETE FROM {r} WHERE handle IN (",
                             "unburied": f"DELETE FROM {f} WHERE id IN (",
                             "policies": f"DELETE FROM {p} WHERE function_name IN ("}
        self._expire = f"DELETE FROM {r} WHERE expires <= %s"
        self._read = (f"SELECT {_RESULT_COLUMNS} FROM {r} WHERE expires > %s",
                      f"SELECT {_FAILED_COLUMNS} FROM {f} ORDER BY id",
                      f"SELECT function_name, policy FROM {p}")

    def _describe(self) -> str:
        a = self.connect_args
        return f"{a.get('host', 'localhost')}:{a.get('port', 3306)}/{a.get('db', '')} table {self.table}"

    async def _connect(self) -> Any:
        args = {"connect_timeout": self.connect_timeout, "charset": "utf8mb4", **self.connect_args,
                "autocommit": False}
        conn = await asyncmy.connect(**args)
        try:
            t = quote_ident(self.table)
            async with conn.cursor() as cur:
                types = await self._column_types(cur)
                if not types:
                    # only when it is missing: on a table that exists, CREATE TABLE IF NOT EXISTS leaves
                    # a note that the driver logs as a warning ("Table '...' already exists")
                    await cur.execute(
                        f"CREATE TABLE IF NOT EXISTS {t} (unique_key VARBINARY(64) NOT NULL, "
                        "function_name VARBINARY(255) NOT NULL, priority INT, data LONGBLOB, when_to_run INT, "
                        "geartrain_extra LONGBLOB, PRIMARY KEY (unique_key, function_name)) ENGINE=InnoDB")
                    types = await self._column_types(cur)
                # a table of gearmand's or of an older geartrain gets what it lacks; the tables beside it too
                missing = [c for c in ("geartrain_extra", "geartrain_retry") if c not in types]
                if missing:
                    await cur.execute(f"ALTER TABLE {t} " + ", ".join(f"ADD COLUMN {c} LONGBLOB NULL" for c in missing))
                schema, _, table = self.table.rpartition(".")
                await cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = "
                                  f"{'%s' if schema else 'DATABASE()'} AND table_name IN (%s, %s, %s)",
                                  (*([schema] if schema else []), *(table + suffix for suffix in _SIDE_TABLES)))
                have = {_text(name).lower() for name, in await cur.fetchall()}
                for suffix, columns in _SIDE_TABLES.items():
                    if (table + suffix).lower() not in have:
                        await cur.execute(f"CREATE TABLE IF NOT EXISTS {self._side[suffix]} {columns}")
                self._binary_keys = all(types.get(c, "varbinary") in ("varbinary", "binary", "blob", "longblob",
                                                                        "mediumblob", "tinyblob")
                                        for c in ("unique_key", "function_name"))
            await conn.commit()
            self._bulk = None
            if getattr(conn, "_bulk_supported", False) and hasattr(conn, "prepare"):
                self._bulk = (await conn.prepare(self._bulk_sql[0]), await conn.prepare(self._bulk_sql[1]))
        except BaseException:
            conn.close()
            raise
        return conn

    async def _column_types(self, cur: Any) -> dict[str, str]:
        """The queue table's columns and their types; empty if there is no such table."""
        schema, _, table = self.table.rpartition(".")
        await cur.execute("SELECT column_name, data_type FROM information_schema.columns "
                          f"WHERE table_schema = {'%s' if schema else 'DATABASE()'} AND table_name = %s",
                          (schema, table) if schema else (table,))
        return {_text(n).lower(): _text(d).lower() for n, d in await cur.fetchall()}

    async def _close_conn(self, conn: Any) -> None:
        try:
            await conn.ensure_closed()
        except Exception:  # noqa: BLE001
            conn.close()

    def _is_full(self, exc: BaseException) -> bool:
        if not (isinstance(exc, OperationalError | InternalError) and exc.args):
            return False
        code = exc.args[0]
        return code in _FULL or (code == _ER_GET_ERRNO and "28" in str(exc.args[-1]))  # errno 28: ENOSPC

    def _is_connection_error(self, exc: BaseException, conn: Any) -> bool:
        if isinstance(exc, OSError | ConnectionError | InterfaceError):
            return True
        if isinstance(exc, OperationalError | InternalError) and exc.args and exc.args[0] in _GONE:
            return True
        return not conn.connected

    # -- the interface ---------------------------------------------------------------------

    async def add(self, jobs: Sequence[StoredJob]) -> None:
        if not jobs:
            return
        if self._binary_keys and plain_batch(jobs):  # five values: no extra record
            rows = [(job.unique, job.function, job.priority, job.data, 0) for job in jobs]
        else:
            rows = self._rows(jobs)

        async def op(conn: Any) -> None:
            try:
                if not await self._add_bulk(rows):
                    async with conn.cursor() as cur:
                        await cur.executemany(self._insert, [row + (None,) * (7 - len(row)) for row in rows])
                await conn.commit()
            except BaseException:
                await _rollback(conn)
                raise

        await self._call("add", op, writes=jobs)

    def _rows(self, jobs: Sequence[StoredJob]) -> list[tuple]:
        """JOBS as (key, function, priority, data, when_to_run, geartrain_extra) rows, the last of each key;
        with geartrain_retry as a seventh value if any job of JOBS has tries."""
        unique_ok = None if self._binary_keys else is_text
        rows = []
        retries = False
        for job in jobs:
            if not self._binary_keys and not is_text(job.function):
                raise StoreError("mysql: function names must be UTF-8 without NUL in a VARCHAR queue table")
            key, when, extra = sql_row(job, unique_ok, INT32_MAX)
            retry = job_retry(job)
            retries = retries or retry is not None
            rows.append((key, job.function, job.priority, job.data, when, extra, retry))
        if not retries:
            rows = [row[:6] for row in rows]
        return list(last_wins(rows, lambda r: (r[0], r[1])))

    async def _add_bulk(self, rows: list[tuple]) -> bool:
        """ROWS with MariaDB's bulk execute (COM_STMT_BULK_EXECUTE: the rows go binary, as they are, no
        escaping and no SQL text to parse), in pieces of about _BULK_BYTES, in the caller's transaction;
        False, before anything was sent, where it cannot be used (MySQL, an older driver). Rows of five
        values have no extra record."""
        if self._bulk is None or len(rows) < _BULK_MIN or len(rows[0]) == 7:
            return False
        pieces = [rows]
        if sum([len(row[3]) for row in rows]) + 100 * len(rows) > _BULK_BYTES:
            pieces = []
            start = size = 0
            for i, row in enumerate(rows):
                size += len(row[3]) + 100
                if size > _BULK_BYTES and i > start:
                    pieces.append(rows[start:i])
                    start, size = i, len(row[3]) + 100
            pieces.append(rows[start:])
        for piece in pieces:
            if len(piece[0]) == 5:
                await self._bulk[1].execute_bulk(piece)
            elif any(row[5] is not None for row in piece):
                await self._bulk[0].execute_bulk(piece)
            else:
                await self._bulk[1].execute_bulk([row[:5] for row in piece])
        return True

    async def _ping(self, conn: Any) -> None:
        async with conn.cursor() as cur:
            await cur.execute("SELECT 1")
            await cur.fetchall()

    def _deleter(self, keys: Sequence[tuple[bytes, bytes]]) -> Callable[[Any], Awaitable[Any]]:
        return self._settler(Settlement(done=list(keys)))

    def _settler(self, batch: Settlement) -> Callable[[Any], Awaitable[Any]]:
        by_function: dict[bytes, list[bytes]] = {}
        for unique, function in batch.done:
            by_function.setdefault(function, []).append(unique)
        deletes = [(self._delete, [function], uniques) for function, uniques in by_function.items()]
        for what, values in (("unkept", batch.unkept), ("unburied", batch.unburied),
                             ("policies", [f for f, text in batch.policies.items() if not text])):
            if values:
                deletes.append((self._side_delete[what], [], list(values)))
        writes = []  # (statement, rows) for executemany, after the deletes: a bad row rolls them back too
        if batch.retried:
            writes.append((self._retry, [(*retry_row(r, INT32_MAX), *r.key) for r in batch.retried]))
        if batch.kept:
            writes.append((self._keep, [kept_row(r) for r in last_wins(batch.kept, lambda r: r.handle)]))
        if batch.buried:
            writes.append((self._bury, [failed_row(f) for f in last_wins(batch.buried, lambda f: f.id)]))
        if any(batch.policies.values()):
            writes.append((self._set_policy, [(f, text) for f, text in batch.policies.items() if text]))

        async def op(conn: Any) -> None:
            try:
                async with conn.cursor() as cur:
                    for head, fixed, values in deletes:
                        for i in range(0, len(values), _DELETE_CHUNK):
                            chunk = values[i:i + _DELETE_CHUNK]
                            await cur.execute(head + ", ".join(["%s"] * len(chunk)) + ")", [*fixed, *chunk])
                    for sql, rows in writes:
                        await cur.executemany(sql, rows)
                await conn.commit()
            except BaseException:
                await _rollback(conn)
                raise

        return op

    async def _read_extras(self, conn: Any, now: float) -> Extras:
        rows = []
        try:
            async with conn.cursor() as cur:
                try:
                    await cur.execute(self._expire, (now,))
                    await conn.commit()
                except Exception as exc:  # noqa: BLE001 - only for want of room, said below
                    if not self._is_full(exc):
                        raise
                    await _rollback(conn)  # (with no room they stay: they are not read)
                for sql, args in zip(self._read, ((now,), None, None), strict=True):
                    await cur.execute(sql, args)
                    rows.append(await cur.fetchall())
            await conn.commit()
        except BaseException:
            await _rollback(conn)
            raise
        return extras_from_rows(*rows)

    async def replay_batches(self, size: int = 10_000) -> AsyncIterator[list[StoredJob]]:
        # An unbuffered (server-side streaming) cursor: memory stays at one batch.
        conn = await self._call("replay", _same)
        names = Names()
        async with self._lock:
            try:
                cur = conn.cursor(SSCursor)
                try:
                    await cur.execute(self._select)
                    while True:
                        rows = await cur.fetchmany(size)
                        if not rows:
                            break
                        yield [job_from_row(_bytes(u), names(_bytes(f)), p, d, w, x, r)
                               for u, f, p, d, w, x, r in rows]
                finally:
                    await cur.close()
                await conn.commit()
            except (OSError, OperationalError, InternalError, InterfaceError) as exc:
                await self._drop()
                raise StoreError(f"mysql: replay failed: {exc}") from exc


async def _same(conn: Any) -> Any:
    return conn


async def _rollback(conn: Any) -> None:
    try:
        await conn.rollback()
    except Exception:  # noqa: BLE001 - the connection may be gone; the caller reports the first error
        pass


def _bytes(value: Any) -> bytes:
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else bytes(value)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)

