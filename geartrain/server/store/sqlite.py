"""The embedded durable queue: one SQLite file, in gearmand's libsqlite3 layout.

Table (gearmand's, default name ``gearman_queue``)::

    unique_key TEXT, function_name TEXT, priority INTEGER, data BLOB, when_to_run INTEGER,
    PRIMARY KEY (unique_key, function_name)

plus one nullable column ``geartrain_extra BLOB`` (see common.py) that gearmand's explicit column
lists never read. unique_key/function_name are written as TEXT (``CAST(? AS TEXT)``, byte for byte)
because gearmand's replay insists on TEXT there, and data as BLOB, when_to_run as INTEGER.

All SQLite calls run on one dedicated thread. The file is in WAL mode with synchronous=NORMAL:
a commit is in the WAL (the OS page cache) before add() returns, which survives a crash or
kill -9 of the process; only a power loss or OS crash can lose the last commits. Set
``?synchronous=FULL`` in the URL to fsync every commit as well.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from pathlib import Path
from typing import Any, TypeVar

from .base import StoredJob
from .common import ConnectedStore, Names, job_from_row, last_wins, plain_batch, sql_row

T = TypeVar("T")

DEFAULT_TABLE = "gearman_queue"
_COLUMNS = "unique_key, function_name, priority, data, when_to_run, geartrain_extra"
_ROW = "(CAST(? AS TEXT), CAST(? AS TEXT), ?, ?, ?, ?)"
#: rows per INSERT statement (6 parameters each: under the 999 of SQLite builds before 3.32)
_ROWS_PER_INSERT = 100


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SQLiteStore(ConnectedStore):
    """Background jobs in a SQLite file."""

    name = "sqlite"
    op_timeout = 0  # no timeout: the busy timeout bounds lock waits, and a thread cannot be cancelled

    def __init__(self, path: str | Path, table: str = DEFAULT_TABLE, synchronous: str = "NORMAL") -> None:
        super().__init__()
        self.path = str(path)
        self.table = table
        self.synchronous = synchronous.upper()
        if self.synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geartrain-sqlite")
        t = quote_ident(table)
        self._insert_head = f"INSERT OR REPLACE INTO {t} ({_COLUMNS}) VALUES "
        self._inserts: dict[int, str] = {}  # the INSERT of N rows, by N
        self._delete = f"DELETE FROM {t} WHERE unique_key = CAST(? AS TEXT) AND function_name = CAST(? AS TEXT)"
        self._select = f"SELECT {_COLUMNS} FROM {t}"

    def _describe(self) -> str:
        return f"{self.path} table {self.table}"

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- connection ------------------------------------------------------------------------

    async def _connect(self) -> sqlite3.Connection:
        return await self._in_thread(self._connect_sync)

    def _connect_sync(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=6.0)
        try:
            conn.text_factory = bytes
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            t = quote_ident(self.table)
            exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (self.table,)).fetchone()
            if not exists:
                conn.execute(f"CREATE TABLE IF NOT EXISTS {t} (unique_key TEXT, function_name TEXT, priority INTEGER, "
                             "data BLOB, when_to_run INTEGER, geartrain_extra BLOB, "
                             "PRIMARY KEY (unique_key, function_name))")
            else:
                columns = {row[1] for row in conn.execute(f"PRAGMA table_info({t})")}
                if b"when_to_run" not in columns:  # a table from a gearmand before epoch jobs
                    conn.execute(f"ALTER TABLE {t} ADD COLUMN when_to_run INTEGER")
                if b"geartrain_extra" not in columns:
                    conn.execute(f"ALTER TABLE {t} ADD COLUMN geartrain_extra BLOB")
        except Exception:
            conn.close()
            raise
        return conn

    async def _close_conn(self, conn: sqlite3.Connection) -> None:
        await self._in_thread(conn.close)

    def _is_connection_error(self, exc: BaseException, conn: Any) -> bool:
        return isinstance(exc, sqlite3.OperationalError | sqlite3.InterfaceError) and not isinstance(
            exc, sqlite3.IntegrityError)

    async def close(self) -> None:
        await super().close()
        self._executor.shutdown(wait=True)

    # -- the interface ---------------------------------------------------------------------

    async def add(self, jobs: Sequence[StoredJob]) -> None:
        if not jobs:
            return
        if plain_batch(jobs):
            rows = [(job.unique, job.function, job.priority, job.data, 0, None) for job in jobs]
        else:
            rows = []
            for job in jobs:
                key, when, extra = sql_row(job)
                rows.append((key, job.function, job.priority, job.data, when, extra))
            rows = last_wins(rows, lambda r: (r[0], r[1]))  # type: ignore[arg-type,assignment]
        await self._call("add", lambda conn: self._in_thread(self._write_rows, conn, rows))

    async def done(self, keys: Sequence[tuple[bytes, bytes]]) -> None:
        if not keys:
            return
        await self._call("done", lambda conn: self._in_thread(self._write, conn, self._delete, keys))

    def _write_rows(self, conn: sqlite3.Connection, rows: Sequence[tuple]) -> None:
        """One transaction of multi-row INSERTs of up to _ROWS_PER_INSERT rows each: a quarter less
        CPU per job than one statement run per row (executemany), most of it SQLite's own."""
        inserts = self._inserts

        def write() -> None:
            for i in range(0, len(rows), _ROWS_PER_INSERT):
                chunk = rows[i:i + _ROWS_PER_INSERT]
                sql = inserts.get(len(chunk))
                if sql is None:
                    sql = inserts[len(chunk)] = self._insert_head + ", ".join([_ROW] * len(chunk))
                conn.execute(sql, list(chain.from_iterable(chunk)))

        _transaction(conn, write)

    @staticmethod
    def _write(conn: sqlite3.Connection, sql: str, rows: Sequence[tuple]) -> None:
        _transaction(conn, lambda: conn.executemany(sql, rows))

    async def replay_batches(self, size: int = 10_000) -> AsyncIterator[list[StoredJob]]:
        cursor = await self._call("replay", lambda conn: self._in_thread(conn.execute, self._select), timeout=0)
        names = Names()
        try:
            while True:
                rows = await self._in_thread(cursor.fetchmany, size)
                if not rows:
                    return
                yield [job_from_row(u, names(f), p, d, w, x) for u, f, p, d, w, x in rows]
        finally:
            await self._in_thread(cursor.close)


def _transaction(conn: sqlite3.Connection, work: Callable[[], object]) -> None:
    """Run WORK in one write transaction on CONN: committed if it returns, rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        work()
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
