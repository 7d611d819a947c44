"""A rolling upgrade loses no job and runs none twice (README: Install; docs/migrating.md): a server with queued
durable jobs is stopped gracefully (SIGUSR1: the running job finishes, the queued ones stay stored), a second
server process starts on the same store and port, and the worker (which reconnects by itself) runs the rest.
Every job runs exactly once, counted from the worker's own log of the uniques and handles it was given. On
SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, start_geartrain
from tests.server.store.backends import Backend, need_service

pytestmark = pytest.mark.timeout(180)

N = 120

WORKER = """
import sys, time
from geartrain import Worker
log = open(sys.argv[2], "a", buffering=1)
worker = Worker(sys.argv[1], client_id="upgrade", max_backoff=0.5)

@worker.register("upgrade")
def upgrade(job):
    log.write(f"{job.unique.decode()} {job.handle.decode()}\\n")  # what this worker was given, as it starts
    time.sleep(0.02)
    return job.data

worker.work()
"""

SUBMIT = """
import sys
from geartrain import Client
with Client(sys.argv[1]) as client:
    for i in range(int(sys.argv[2])):
        client.submit_background("upgrade", b"x", unique=f"job-{i:04d}")
"""


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    need_service(request.param)
    b = Backend(request.param, tmp_path)
    yield b
    asyncio.run(b.drop())


def lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def wait_lines(log: Path, at_least: int, timeout: float = 60.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(lines(log)) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return lines(log)


def test_graceful_stop_then_a_new_server_on_the_same_store_runs_every_job_once(backend: Backend, tmp_path: Path):
    port = free_port()
    address = f"127.0.0.1:{port}"
    log = tmp_path / "worker.log"
    old = start_geartrain(tmp_path, "--queue", backend.url, "--verbose", "NOTICE", port=port)
    worker = None
    new = None
    try:
        submitted = subprocess.run([sys.executable, "-c", SUBMIT, address, str(N)], cwd=ROOT, timeout=60,
                                   capture_output=True, text=True)
        assert submitted.returncode == 0, submitted.stderr
        worker = subprocess.Popen([sys.executable, "-c", WORKER, address, str(log)], cwd=ROOT)
        assert len(wait_lines(log, 10)) >= 10  # the worker is under way on the old server

        old.proc.send_signal(signal.SIGUSR1)  # the upgrade: stop gracefully
        assert old.proc.wait(30) == 0
        ran_on_old = len(lines(log))
        assert 10 <= ran_on_old < N
        stored = asyncio.run(backend.count())
        assert stored == N - ran_on_old  # the job running at the stop finished there; the queued ones are stored

        # the new version: a second process on the same store and port
        new = start_geartrain(tmp_path, "--queue", backend.url, "--verbose", "NOTICE", port=port)
        got = wait_lines(log, N)
        time.sleep(0.3)  # a job run twice would show up now
        got = lines(log)
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(10)
        old.stop()
        if new is not None:
            new.stop()
    uniques = Counter(line.split()[0] for line in got)
    assert sorted(uniques) == [f"job-{i:04d}" for i in range(N)]
    assert set(uniques.values()) == {1}, [u for u, n in uniques.items() if n > 1]
    assert asyncio.run(backend.count()) == 0
    assert f"replayed {N - ran_on_old} job(s)" in new.log.read_text()
