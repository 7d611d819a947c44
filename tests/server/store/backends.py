"""The durable-queue backends as tests see them: a fresh table (or Redis prefix) per test on the
database servers this machine runs, the same spot named as a geartrain queue URL and as gearmand's
-q options, direct access to what is stored, and a way to kill our connection server-side.

Services that are not running are started with scripts/start-services; a backend that still is
not reachable skips the test (fails under GEARTRAIN_REQUIRE_PEERS=1).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geartrain.server.store.base import Store
from geartrain.server.store.url import store_from_url
from tests.conftest import ROOT, free_port, need_peer, wait_port

KINDS = ["sqlite", "postgres", "mysql", "redis"]
PORTS = {"postgres": 5432, "mysql": 3306, "redis": 6379}
#: what our side sends last when it writes a batch of adds (PostgreSQL's Sync message, MySQL's COMMIT,
#: Redis' EVALSHA): once it reached the database the batch is committed, whether the reply comes back or not
COMMIT_MARK = {"postgres": b"S\x00\x00\x00\x04", "mysql": b"COMMIT", "redis": b"EVALSHA"}
HOST = "127.0.0.1"
_started = False


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def need_service(kind: str) -> None:
    """Make sure KIND's database server runs (starting it if we can), or skip/fail."""
    global _started
    if kind == "sqlite":
        return
    if not _reachable(PORTS[kind]) and not _started:
        _started = True
        subprocess.run([str(ROOT / "scripts" / "start-services")], timeout=90, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    need_peer(f"{kind} server on {HOST}:{PORTS[kind]}", _reachable(PORTS[kind]))


def fresh_backend(kind: str, tmp: Path) -> Iterator[Backend]:
    """A fresh spot on KIND's database server (started if need be) for one test; dropped afterwards."""
    need_service(kind)
    backend = Backend(kind, tmp)
    yield backend
    asyncio.run(backend.drop())


@contextlib.contextmanager
def small_filesystem(tmp: Path, size: str = "24m") -> Iterator[Path]:
    """A tmpfs of SIZE mounted under TMP for the test (needs root; skips, or fails under
    GEARTRAIN_REQUIRE_PEERS=1, where it cannot be mounted): a disk a test can fill."""
    where = tmp / "small-fs"
    where.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True).returncode == 0
    need_peer(f"a {size} tmpfs mounted at {where} (root)", mounted)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(directory: Path) -> Path:
    """Fill the filesystem of DIRECTORY to the last byte with one file; that file (unlink it to free the room)."""
    path = directory / "filler"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        size = 1 << 20
        while size:
            try:
                os.write(fd, bytes(size))
            except OSError:
                size //= 2
    finally:
        os.close(fd)
    return path


@dataclass
class Backend:
    """One fresh spot (table / key prefix) on one backend."""

    kind: str
    tmp: Path
    port: int | None = None  # connect through this port instead of the service's (a proxy)
    name: str = field(default_factory=lambda: "gt_" + uuid.uuid4().hex[:10])

    @property
    def service_port(self) -> int:
        return self.port or PORTS.get(self.kind, 0)

    @property
    def path(self) -> Path:
        return self.tmp / f"{self.name}.sqlite"

    @property
    def prefix(self) -> str:  # no '-' in it: gearmand splits Redis keys at '-'
        return "_" + self.name + "_"

    @property
    def url(self) -> str:
        """The geartrain --queue URL of this spot."""
        if self.kind == "sqlite":
            return f"sqlite:///{self.path}?table={self.name}"
        if self.kind == "postgres":
            return f"postgresql://postgres@{HOST}:{self.service_port}/test?table={self.name}"
        if self.kind == "mysql":
            return f"mysql://root@{HOST}:{self.service_port}/test?table={self.name}"
        return f"redis://{HOST}:{self.service_port}/0?prefix={self.prefix}"

    @property
    def gearmand_args(self) -> list[str]:
        """gearmand's options for the same spot."""
        if self.kind == "sqlite":
            return ["-q", "libsqlite3", "--libsqlite3-db", str(self.path), "--libsqlite3-table", self.name]
        if self.kind == "postgres":
            conninfo = f"host={HOST} port={self.service_port} user=postgres dbname=test"
            return ["-q", "Postgres", "--libpq-conninfo", conninfo, "--libpq-table", self.name]
        if self.kind == "mysql":
            return ["-q", "MySQL", "--mysql-host", HOST, "--mysql-port", str(self.service_port), "--mysql-user", "root",
                    "--mysql-db", "test", "--mysql-table", self.name]
        return ["-q", "redis", "--redis-server", HOST, "--redis-port", str(self.service_port),
                "--redis-prefix", self.prefix]

    def store(self) -> Store:
        return store_from_url(self.url)

    # -- direct access, bypassing the store ----------------------------------------------

    async def sql(self, query: str, *args: Any) -> list[tuple]:
        """Run QUERY directly on the database (%s placeholders for MySQL, $n for PostgreSQL, ? SQLite)."""
        if self.kind == "sqlite":
            import sqlite3

            def run() -> list[tuple]:
                conn = sqlite3.connect(self.path, isolation_level=None)
                conn.text_factory = bytes
                try:
                    return [tuple(r) for r in conn.execute(query, args).fetchall()]
                finally:
                    conn.close()
            return await asyncio.to_thread(run)
        if self.kind == "postgres":
            import asyncpg

            conn = await asyncpg.connect(host=HOST, port=PORTS["postgres"], user="postgres", database="test")
            try:
                return [tuple(r) for r in await conn.fetch(query, *args)]
            finally:
                await conn.close()
        if self.kind == "mysql":
            import asyncmy

            conn = await asyncmy.connect(host=HOST, port=PORTS["mysql"], user="root", db="test", autocommit=True)
            try:
                async with conn.cursor() as cur:
                    await cur.execute(query, args or None)
                    return [tuple(r) for r in await cur.fetchall()]
            finally:
                conn.close()
        raise ValueError("no SQL on redis")

    async def redis(self, *command: Any) -> Any:
        import redis.asyncio as aioredis

        client = aioredis.Redis(host=HOST, port=PORTS["redis"])
        try:
            return await client.execute_command(*command)
        finally:
            await client.aclose()

    async def redis_keys(self) -> list[bytes]:
        keys = []
        cursor = None
        while cursor != 0:
            cursor, found = await self.redis("SCAN", cursor or 0, "MATCH", self.prefix + "*", "COUNT", 1000)
            cursor = int(cursor)
            keys += found
        return sorted(keys)

    async def count(self) -> int:
        """How many jobs are stored right now."""
        if self.kind == "redis":
            return len(await self.redis_keys())
        if self.kind == "sqlite" and not self.path.exists():
            return 0
        return (await self.sql(f"SELECT COUNT(*) FROM {self.name}"))[0][0]

    async def has_job(self, function: bytes, unique: bytes) -> bool:
        """Is a job with this function and (plain) unique stored right now?"""
        if self.kind == "redis":
            return bool(await self.redis("EXISTS", f"{self.prefix}-".encode() + function + b"-" + unique))
        if self.kind == "sqlite" and not self.path.exists():
            return False
        mark = {"postgres": "$1", "mysql": "%s", "sqlite": "?"}[self.kind]
        value: Any = unique.decode() if self.kind == "postgres" else unique
        rows = await self.sql(f"SELECT COUNT(*) FROM {self.name} WHERE unique_key = {mark}", value)
        return bool(rows[0][0])

    async def kill_connection(self, store: Store) -> None:
        """End STORE's database connection from the server side."""
        conn = store._conn  # type: ignore[attr-defined]
        if self.kind == "postgres":
            await self.sql("SELECT pg_terminate_backend($1)", conn.get_server_pid())
        elif self.kind == "mysql":
            await self.sql(f"KILL {int(conn.thread_id())}")
        elif self.kind == "redis":
            await self.redis("CLIENT", "KILL", "ID", await conn.client_id())
        else:
            raise ValueError("sqlite has no connection to kill")

    async def drop(self) -> None:
        """Remove the table / keys."""
        if self.kind == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
        elif self.kind == "postgres":
            for table in self.tables:
                await self.sql(f'DROP TABLE IF EXISTS "{table}"')
        elif self.kind == "mysql":
            for table in self.tables:
                await self.sql(f"DROP TABLE IF EXISTS `{table}`")
        else:
            keys = await self.redis_keys()
            for i in range(0, len(keys), 1000):
                await self.redis("DEL", *keys[i:i + 1000])
            await self.redis("DEL", *self.side_keys)

    @property
    def tables(self) -> list[str]:
        """The queue table and the tables beside it."""
        return [self.name] + [self.name + suffix for suffix in ("_results", "_failed", "_policies")]

    @property
    def side_keys(self) -> list[str]:
        """The Redis hashes beside the jobs' keys."""
        return [f"geartrain-{what}:{self.prefix}" for what in ("extra", "retry", "results", "failed", "policies")]


class Proxy:
    """A TCP relay to a database port that a test can cut (every connection dropped, nothing
    listening) and restore on the same port: a network outage without touching the service.

    ``hold_replies_after(pattern)`` loses the replies instead: once our side sends bytes holding
    PATTERN, they still reach the database but nothing it answers comes back (``held`` is set), as
    when the network breaks after a write arrived and before its reply did."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pattern: bytes | None = None
        self.held = asyncio.Event()

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._handle, HOST, self.port or 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def hold_replies_after(self, pattern: bytes) -> None:
        self._pattern = pattern
        self.held.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, to_database: bool) -> None:
            try:
                while data := await src.read(65536):
                    if not to_database and self.held.is_set():
                        continue  # the reply is lost
                    dst.write(data)
                    await dst.drain()
                    if to_database and self._pattern is not None and self._pattern in data:
                        self._pattern = None
                        self.held.set()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))
        self._writers -= {writer, up_writer}

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            transport = writer.transport
            transport.abort()
        self._writers.clear()
        self._pattern = None
        self.held.clear()
        await asyncio.sleep(0.05)

    async def restore(self) -> None:
        await self.start()


class PrivateRedis:
    """A redis-server of the test's own, which it can stop and start again on the same port (with
    PERSIST, what it held comes back: an append-only file in TMP)."""

    def __init__(self, tmp: Path, persist: bool = False) -> None:
        self.binary = shutil.which("redis-server")
        need_peer("redis-server", self.binary is not None)
        self.tmp = tmp
        self.persist = persist
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen([str(self.binary), "--port", str(self.port), "--bind", HOST, "--save", "",
                                      "--appendonly", "yes" if self.persist else "no", "--dir", str(self.tmp)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
