"""A durable queue whose database is down when the server starts: the server waits for it, trying
again with a backoff and saying so in the log (one line per attempt), and only then listens; it can
be stopped meanwhile. A queue that can never work (an unknown parameter, an SQLite path that cannot
be opened) is refused at once instead.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from geartrain.server.app import Options, Server
from geartrain.server.store.base import Extras, Settlement, Store, StoredJob, StoreError
from tests.conftest import ROOT, free_port


class FlakyStore(Store):
    """open() fails OPEN_FAILURES times; the first replay breaks after half its jobs."""

    name = "flaky"

    def __init__(self, open_failures: int, jobs: list[StoredJob], replay_failures: int = 0) -> None:
        self.open_failures = open_failures
        self.replay_failures = replay_failures
        self.jobs = jobs
        self.opens = 0

    async def open(self) -> None:
        self.opens += 1
        if self.open_failures:
            self.open_failures -= 1
            raise StoreError("flaky: cannot connect to db:5432: Connection refused")

    async def replay(self) -> list[StoredJob]:
        return list(self.jobs)

    async def replay_batches(self, size: int = 10_000) -> AsyncIterator[list[StoredJob]]:
        half = len(self.jobs) // 2
        yield self.jobs[:half]
        if self.replay_failures:
            self.replay_failures -= 1
            raise StoreError("flaky: replay failed: connection lost")
        yield self.jobs[half:]

    async def add(self, jobs: Sequence[StoredJob]) -> None:
        return None

    async def settle(self, batch: Settlement) -> None:
        return None

    async def replay_extras(self) -> Extras:
        return Extras()

    async def close(self) -> None:
        return None


def _server(store: Store) -> Server:
    server = Server(Options(port=0, store=store))
    server.open_retry_min = 0.01
    server.open_retry_max = 0.05
    return server


def test_start_waits_for_the_queue_and_replays_each_job_once(caplog: pytest.LogCaptureFixture):
    jobs = [StoredJob(b"f", b"u%d" % i, b"d", 1) for i in range(6)] + [StoredJob(b"f", b"", b"no unique", 1)]

    async def main() -> None:
        store = FlakyStore(open_failures=2, jobs=jobs, replay_failures=1)
        server = _server(store)
        try:
            await server.start()
            assert store.opens == 4  # two refused, one replay cut short, one whole
            assert server.listeners and server.addresses
            f = server.state.functions[b"f"]
            assert f.queued[1] == len(jobs) and len(server.state.jobs) == len(jobs)  # none twice
            assert server.admin.state is server.state
            # the server answers on the state it kept
            reader, writer = await asyncio.open_connection(*server.addresses[0])
            writer.write(b"status\n")
            assert await asyncio.wait_for(reader.readuntil(b".\n"), 5) == b"f\t7\t0\t0\n.\n"
            writer.close()
        finally:
            await server.close()

    caplog.set_level(logging.INFO, logger="geartrain")
    asyncio.run(main())
    tries = [r for r in caplog.records if "not available" in r.getMessage()]
    assert [r.levelname for r in tries] == ["NOTICE"] * 3
    assert "attempt 1" in tries[0].getMessage() and "Connection refused" in tries[0].getMessage()
    assert any("available after 4 attempts" in r.getMessage() for r in caplog.records)


def test_stop_while_waiting_for_the_queue():
    async def main() -> None:
        server = _server(FlakyStore(open_failures=10**6, jobs=[]))
        task = asyncio.ensure_future(server.start())
        await asyncio.sleep(0.1)
        assert not task.done() and not server.listeners  # not listening while the queue is down
        server.request_shutdown(False)
        await asyncio.wait_for(task, 5)
        assert not server.listeners

    asyncio.run(main())


def test_the_port_is_held_but_refuses_connections_until_the_queue_is_replayed():
    port = free_port()

    async def main() -> None:
        server = Server(Options(port=port, store=FlakyStore(open_failures=10**6, jobs=[])))
        server.open_retry_min = server.open_retry_max = 0.01
        task = asyncio.ensure_future(server.start())
        await asyncio.sleep(0.1)
        try:
            assert not task.done()
            with pytest.raises(ConnectionRefusedError):  # no connection before the replay is done
                await asyncio.open_connection("127.0.0.1", port)
            with pytest.raises(OSError), socket.socket() as other:  # but the port is ours: taken, it failed at once
                other.bind(("127.0.0.1", port))
        finally:
            server.request_shutdown(False)
            await asyncio.wait_for(task, 5)
        with socket.socket() as other:  # let go when stopped before listening
            other.bind(("127.0.0.1", port))

    asyncio.run(main())


def test_serve_with_an_unreachable_database_keeps_trying_until_stopped(tmp_path: Path):
    port = free_port()
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "geartrain", "serve", "-L", "127.0.0.1", "-p", str(port),
                             "--queue", f"postgresql://127.0.0.1:{free_port()}/x", "--log-file", str(log),
                             "--verbose", "NOTICE"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        def tries() -> int:
            return log.read_text().count("not available") if log.exists() else 0

        while tries() < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()
        text = log.read_text()
        assert "the postgres queue is not available (attempt 1)" in text and "(attempt 2)" in text
        # one line per attempt, with the delay the server waits: no second line from the store with its own
        lines = [line for line in text.splitlines() if "Connection refused" in line]
        assert lines and all("is not available (attempt" in line and "trying again in" in line for line in lines), text
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0
        assert b"Traceback" not in err and "Traceback" not in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("queue, says", [
    ("sqlite:///{tmp}/q.sqlite?tabel=x", "unknown parameter 'tabel' in the sqlite queue URL; it takes: table, "),
    ("redis://127.0.0.1:6379/0?prefx=x", "unknown parameter 'prefx' in the redis queue URL; it takes: prefix, db"),
    ("mysql://root@127.0.0.1:3306/test?foo=1", "unknown parameter 'foo' in the mysql queue URL; it takes: table, "),
    ("postgresql://postgres@127.0.0.1:5432/test?tabel=x", "unknown parameter 'tabel' in the postgresql queue URL"),
    ("sqlite:////proc/nope/q.sqlite", "cannot open /proc/nope/q.sqlite: /proc/nope: No such file or directory"),
    ("sqlite:///{tmp}/a-file/q.sqlite", "cannot open {tmp}/a-file/q.sqlite: Not a directory"),
    ("sqlite:///{tmp}/not-a-database", "is not an SQLite database"),
])
def test_a_queue_that_can_never_work_is_refused_at_once(queue: str, says: str, tmp_path: Path):
    """One line on stderr and a failed exit, instead of a server on default settings (a typo writing
    to another table) or one retrying for ever as if a database were down."""
    (tmp_path / "a-file").write_text("a file, not a directory")
    (tmp_path / "not-a-database").write_bytes(b"not SQLite " * 100)
    queue, says = queue.format(tmp=tmp_path), says.format(tmp=tmp_path)
    done = subprocess.run([sys.executable, "-m", "geartrain", "serve", "-L", "127.0.0.1", "-p", str(free_port()),
                           "--queue", queue, "--log-file", str(tmp_path / "log")],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and says in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "not available" not in (tmp_path / "log").read_text() if (tmp_path / "log").exists() else True
