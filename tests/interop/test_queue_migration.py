"""Moving a queue between the real C gearmand (1.1.20, Debian) and geartrain, for every queue
plugin that gearmand was built with here (libsqlite3, Postgres, MySQL, redis).

gearmand -> geartrain: gearmand stores background jobs submitted with ``gearman -b``; gearmand is
stopped; geartrain starts on the same table / Redis keys (given with gearmand's own option
spellings) and a ``gearman -w`` worker receives every job, after which the table is empty.

geartrain -> gearmand: what our store writes, gearmand replays and runs (the layout really is
gearmand's).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from geartrain.server.store.base import StoredJob
from tests.conftest import Server, need_binary, start_gearmand, start_geartrain
from tests.server.store.backends import KINDS, Backend, need_service

pytestmark = [pytest.mark.interop, pytest.mark.timeout(180)]

N = 40


@pytest.fixture(params=KINDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    need_service(request.param)
    b = Backend(request.param, tmp_path)
    yield b
    asyncio.run(b.drop())


def gearman(server: Server, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    binary = need_binary("gearman")
    return subprocess.run([binary, "-h", server.host, "-p", str(server.port), *args], capture_output=True,
                          timeout=timeout, check=False)


def work(server: Server, function: str, count: int) -> list[bytes]:
    """Run ``gearman -w`` until it has done COUNT jobs; the workloads it received (';'-terminated)."""
    out = gearman(server, "-w", "-f", function, "-c", str(count)).stdout
    return [w for w in out.split(b";") if w]


def count_until(backend: Backend, want: int, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        n = asyncio.run(backend.count())
        if n == want or time.monotonic() > deadline:
            return n
        time.sleep(0.1)


def test_gearmand_queue_runs_on_geartrain(backend: Backend, tmp_path: Path):
    gd = start_gearmand(tmp_path, *backend.gearmand_args)
    try:
        normal = [f"n{i:03d};" for i in range(N)]
        r = gearman(gd, "-b", "-f", "mig", *normal)
        assert r.returncode == 0, r.stderr
        assert gearman(gd, "-b", "-I", "-f", "mig", "high;").returncode == 0
        assert gearman(gd, "-b", "-L", "-u", "my-unique", "-f", "mig", "low;").returncode == 0
        assert gearman(gd, "-b", "-f", "other", "o1;").returncode == 0
        assert count_until(backend, N + 3) == N + 3, "gearmand did not store the jobs"
    finally:
        gd.stop()
    assert asyncio.run(backend.count()) == N + 3

    gt = start_geartrain(tmp_path, *backend.gearmand_args)
    try:
        got = work(gt, "mig", N + 2)
        assert sorted(got) == sorted([w.rstrip(";").encode() for w in normal] + [b"high", b"low"])
        assert work(gt, "other", 1) == [b"o1"]
        assert count_until(backend, 0) == 0, "finished jobs still stored"
    finally:
        gt.stop()


def test_geartrain_store_is_readable_by_gearmand(backend: Backend, tmp_path: Path):
    jobs = [StoredJob(b"back", b"u%03d" % i, b"b%03d;" % i, 1) for i in range(N)]

    async def fill() -> None:
        store = backend.store()
        await store.open()
        await store.add(jobs)
        await store.close()

    asyncio.run(fill())
    gd = start_gearmand(tmp_path, *backend.gearmand_args)
    try:
        got = work(gd, "back", N)
        assert sorted(got) == sorted(j.data.rstrip(b";") for j in jobs)
        assert count_until(backend, 0) == 0
    finally:
        gd.stop()
