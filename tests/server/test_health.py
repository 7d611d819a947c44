"""Liveness and readiness (server/health.py): GET /healthz and /readyz over real HTTP, the admin commands
`health` and `ready` over the Gearman port, the store's probe on every backend, and the cases where the
server is not ready: its queue not replayed yet (waiting for the database at start), its store unreachable
after start (a private redis-server stopped under it), and a graceful stop under way.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from geartrain.protocol.packets import T
from geartrain.server.app import Options, Server
from geartrain.server.commands import ready_reply
from geartrain.server.health import Health, Report
from geartrain.server.store.base import MemoryStore, Store, StoreError
from tests.conftest import free_port, start_geartrain, wait_port
from tests.interop.wire import Wire, wait_for
from tests.server.store.backends import KINDS, Backend, PrivateRedis, need_service
from tests.server.test_serve_queue_down import FlakyStore


class PingStore(MemoryStore):
    """A store whose ping is scripted: counts its calls, fails with FAIL, or hangs while HANG is set."""

    durable = True
    name = "scripted"

    def __init__(self) -> None:
        self.pings = 0
        self.fail: str | None = None
        self.hang = False

    async def ping(self) -> None:
        self.pings += 1
        await asyncio.sleep(0.01)
        while self.hang:
            await asyncio.sleep(0.01)
        if self.fail:
            raise StoreError(self.fail)


def test_ready_only_once_replayed_and_not_stopping_and_the_store_answers():
    async def main() -> None:
        store = PingStore()
        health = Health(store, timeout=0.2, fresh=0.0)
        report = await health.ready()
        assert not report.ok and report.reasons == ["replayed: the queue is not replayed yet"]
        assert store.pings == 0  # no probe before the replay
        health.replayed = True
        report = await health.ready()
        assert report.ok and report.checks == {"replayed": "ok", "accepting": "ok", "store": "ok"}
        store.fail = "scripted: cannot connect to db:5432: Connection refused"
        assert (await health.ready()).reasons == ["store: scripted: cannot connect to db:5432: Connection refused"]
        store.fail, store.hang = None, True
        assert (await health.ready()).reasons == ["store: no answer within 0.2s"]
        store.hang = False
        health.stopping = True
        assert (await health.ready()).reasons == ["accepting: the server is stopping"]
        assert health.live().ok

    asyncio.run(main())


def test_probes_are_shared_and_a_fresh_one_reused():
    async def main() -> None:
        store = PingStore()
        health = Health(store, fresh=60.0)
        health.replayed = True
        reports = await asyncio.gather(*(health.ready() for _ in range(20)))
        assert all(r.ok for r in reports) and store.pings == 1  # twenty callers, one round trip
        await health.ready()
        assert store.pings == 1  # fresh: reused

    asyncio.run(main())


def test_a_check_added_later_takes_part():
    async def main() -> None:
        health = Health(MemoryStore(), fresh=0.0)
        health.replayed = True
        held = {"lease": False}

        async def lease() -> str | None:
            return None if held["lease"] else "the lease is not held"

        health.add_check("lease", lease)
        assert (await health.ready()).reasons == ["lease: the lease is not held"]
        held["lease"] = True
        assert (await health.ready()).ok

    asyncio.run(main())


def test_the_admin_replies():
    assert ready_reply(Report(True, {"store": "ok"})) == b"OK ready\n"
    assert ready_reply(Report(False, {"store": "no answer within 2s", "replayed": "ok"})) == \
        b"ERR NOT_READY store:+no+answer+within+2s\r\n"


def test_not_ready_while_the_queue_is_not_replayed():
    """At start, while the database is awaited, nothing listens (a probe's refused connection says "not ready");
    the readiness the server would give says why."""

    async def main() -> None:
        server = Server(Options(port=0, store=FlakyStore(open_failures=10**6, jobs=[])))
        server.open_retry_min = server.open_retry_max = 0.01
        task = asyncio.ensure_future(server.start())
        await asyncio.sleep(0.1)
        try:
            report = await server.health.ready()
            assert not report.ok and report.reasons == ["replayed: the queue is not replayed yet"]
            assert not server.listeners
        finally:
            server.request_shutdown(False)
            await asyncio.wait_for(task, 5)

    asyncio.run(main())


def test_not_ready_during_a_graceful_stop_on_a_connection_still_open():
    async def main() -> None:
        server = Server(Options(port=0))
        await server.start()
        try:
            host, port = server.addresses[0]
            admin_r, admin_w = await asyncio.open_connection(host, port)
            admin_w.write(b"ready\n")
            assert await asyncio.wait_for(admin_r.readline(), 5) == b"OK ready\n"
            worker_r, worker_w = await asyncio.open_connection(host, port)
            client_r, client_w = await asyncio.open_connection(host, port)
            client_w.write(_packet(T.SUBMIT_JOB_BG, b"f", b"u", b"x"))
            await asyncio.wait_for(client_r.readexactly(12), 5)
            worker_w.write(_packet(T.CAN_DO, b"f") + _packet(T.GRAB_JOB))
            await asyncio.wait_for(worker_r.readexactly(12), 5)  # JOB_ASSIGN's head: the job runs
            server.request_shutdown(True)
            admin_w.write(b"ready\n")
            stopping = b"ERR NOT_READY accepting:+the+server+is+stopping\r\n"
            assert await asyncio.wait_for(admin_r.readline(), 5) == stopping
            for writer in (admin_w, worker_w, client_w):
                writer.close()
        finally:
            server.request_shutdown(False)
            await server.close()

    asyncio.run(main())


def _packet(ptype: int, *args: bytes) -> bytes:
    body = b"\0".join(args)
    return b"\0REQ" + int(ptype).to_bytes(4, "big") + len(body).to_bytes(4, "big") + body


@pytest.fixture(params=KINDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    need_service(request.param)
    b = Backend(request.param, tmp_path)
    yield b
    asyncio.run(b.drop())


def test_each_store_answers_the_probe_and_reconnects_for_it(backend: Backend):
    async def main() -> None:
        store: Store = backend.store()
        await store.open()
        try:
            await store.ping()
            if backend.kind != "sqlite":
                await backend.kill_connection(store)
                await store.ping()  # the broken connection is replaced, as for add and done
        finally:
            await store.close()

    asyncio.run(main())


# ---------------------------------------------------------------------- over HTTP and the admin port


def _get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_healthz_and_readyz_over_http_and_the_admin_port_with_the_store_going_away(tmp_path: Path):
    redis = PrivateRedis(tmp_path)
    redis.start()
    http_port = free_port()
    server = start_geartrain(tmp_path, "--queue", f"redis://127.0.0.1:{redis.port}/0", "--http-port", str(http_port))
    try:
        wait_port(http_port, server.proc)
        assert _get(http_port, "/healthz") == (200, {"status": "ok", "live": True, "checks": {"process": "ok"},
                                                      "reasons": []})
        status, body = _get(http_port, "/readyz")
        assert status == 200 and body["ready"] is True
        assert body["checks"] == {"replayed": "ok", "accepting": "ok", "store": "ok"}
        with Wire(server.host, server.port) as wire:
            assert wire.admin_line("health") == b"OK live\n"
            assert wire.admin_line("ready") == b"OK ready\n"
            assert wire.admin_line("status") == b".\n"  # the connection goes on after a reply that came later

            redis.stop()
            time.sleep(1.1)  # the last probe's report is no longer fresh
            status, body = _get(http_port, "/readyz")
            assert status == 503 and body["ready"] is False and body["status"] == "not ready"
            assert list(body["checks"]) == ["replayed", "accepting", "store"] and body["checks"]["store"] != "ok"
            assert body["reasons"][0].startswith("store: redis: ") and f":{redis.port}" in body["reasons"][0], body
            line = wire.admin_line("ready")
            assert line.startswith(b"ERR NOT_READY store:+redis:+") and line.endswith(b"\r\n"), line
            assert _get(http_port, "/healthz")[0] == 200  # alive all the same

            redis.start()  # the store reconnects (after its backoff): ready again
            assert wait_for(lambda: _get(http_port, "/readyz")[0] == 200, timeout=20)
            assert wire.admin_line("ready") == b"OK ready\n"
    finally:
        server.stop()
        redis.stop()
