"""Several servers: three servers, one killed mid-run and restarted."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest

from geartrain.client import AsyncClient
from geartrain.errors import JobLost
from geartrain.hashring import HashRing
from tests.conftest import start_gearmand, start_geartrain
from tests.test_client import worker_thread


@pytest.mark.parametrize("kind", ["geartrain", "gearmand"])
def test_three_servers_one_killed_mid_run(kind, tmp_path):
    start = start_geartrain if kind == "geartrain" else start_gearmand
    servers = [start(tmp_path) for _ in range(3)]
    addresses = [s.address for s in servers]
    victim = servers[1]
    runs: Counter[bytes] = Counter()
    served_by: dict[bytes, str] = {}
    lock = threading.Lock()

    def work(job):
        with lock:
            runs[job.unique] += 1
            served_by[job.unique] = job.server
        time.sleep(0.002)
        return job.unique

    async def main():
        async with AsyncClient(addresses, wait_for_server=5, max_backoff=0.3) as client:
            first = [await client.submit_job("f", b"", unique=f"a-{i}") for i in range(300)]
            while sum(j.done() for j in first) < 60:
                await asyncio.sleep(0.005)
            victim.proc.kill()  # mid-run: jobs queued and running there are cut off
            victim.proc.wait()
            second = [await client.submit_job("f", b"", unique=f"b-{i}") for i in range(300)]
            outcome = await asyncio.wait_for(
                asyncio.gather(*(j.result() for j in first + second), return_exceptions=True), 60)
            # the victim comes back: clients and workers use it again
            restarted = start(tmp_path, port=victim.port)
            servers[1] = restarted
            ring = HashRing(addresses)
            mine = [u for u in (f"c-{i}".encode() for i in range(400)) if ring.node(u) == victim.address][:30]
            deadline = time.monotonic() + 10
            third = []
            for u in mine:
                while True:
                    job = await client.submit_job("f", b"", unique=u)
                    try:
                        third.append(await job.result(5))
                        break
                    except JobLost:  # the old connection's last gasp; only before it is seen down
                        assert time.monotonic() < deadline
            return first, second, outcome, mine, third

    try:
        with worker_thread(addresses, {"f": work}, max_backoff=0.3), \
                worker_thread(addresses, {"f": work}, max_backoff=0.3):
            first, second, outcome, mine, third = asyncio.run(main())
    finally:
        for s in servers:
            s.stop()

    assert all(n == 1 for n in runs.values()), "a job ran twice"
    jobs = first + second
    ok = [j for j, r in zip(jobs, outcome, strict=True) if not isinstance(r, BaseException)]
    lost = [j for j, r in zip(jobs, outcome, strict=True) if isinstance(r, BaseException)]
    assert all(isinstance(r, JobLost) for r in outcome if isinstance(r, BaseException))
    assert all(j.server == victim.address for j in lost)  # only jobs the dead server had accepted
    for job, res in zip(jobs, outcome, strict=True):
        if not isinstance(res, BaseException):
            assert res == job.unique and runs[job.unique] == 1
    assert all(j.server != victim.address for j in second)  # nothing is sent to a dead server
    assert len(ok) >= 450
    assert third == mine  # the restarted server gets its keys back and its workers are there again
    assert {served_by[u] for u in mine} == {victim.address}
