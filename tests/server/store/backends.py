"""The durable-queue backends as tests see them: a fresh table (or Redis prefix) per test on the
database servers this machine runs, the same spot named as a geartrain queue URL and as gearmand's
-q options, direct access to what is stored, and a way to kill our connection server-side.

Services that are not running are started with scripts/start-services; a backend that still is
not reachable skips the test (fails under GEARTRAIN_REQUIRE_PEERS=1).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geartrain.server.store.base import Store
from geartrain.server.store.url import store_from_url
from tests.conftest import ROOT, need_peer

KINDS = ["sqlite", "postgres", "mysql", "redis"]
PORTS = {"postgres": 5432, "mysql": 3306, "redis": 6379}
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
            await self.sql(f'DROP TABLE IF EXISTS "{self.name}"')
        elif self.kind == "mysql":
            await self.sql(f"DROP TABLE IF EXISTS `{self.name}`")
        else:
            keys = await self.redis_keys()
            for i in range(0, len(keys), 1000):
                await self.redis("DEL", *keys[i:i + 1000])
            await self.redis("DEL", "geartrain-extra:" + self.prefix)


class Proxy:
    """A TCP relay to a database port that a test can cut (every connection dropped, nothing
    listening) and restore on the same port: a network outage without touching the service."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._handle, HOST, self.port or 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            transport = writer.transport
            transport.abort()
        self._writers.clear()
        await asyncio.sleep(0.05)

    async def restore(self) -> None:
        await self.start()
