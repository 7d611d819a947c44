"""gearmand (1.1.20, Debian) on a queue table or Redis prefix that geartrain's retries, kept results,
failed-job registry and policies have been written to: gearmand runs exactly the stored jobs (none of
the side records or tables beside the queue), and what gearmand stores there geartrain replays, with no
tries left over from an older job of the same key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from geartrain.server.store.base import FailedJob, KeptResult, Retry, Settlement, StoredJob, Try
from tests.conftest import start_gearmand
from tests.interop.test_queue_migration import count_until, gearman, work
from tests.server.store.backends import KINDS, Backend, fresh_backend

pytestmark = [pytest.mark.interop, pytest.mark.timeout(180)]

N = 20
HISTORY = Try.encode_all([Try(1.0, 2.0, "host fd 9", "exception", b"boom")])


@pytest.fixture(params=KINDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from fresh_backend(request.param, tmp_path)


def _extras() -> Settlement:
    now = time.time()
    return Settlement(kept=[KeptResult(b"H:x:1", b"retry", b"r0", "complete", b"ok", now, now + 3600)],
                      buried=[FailedJob(1, b"H:x:2", b"retry", b"dead", b"payload;", 8, 1, True, now, HISTORY)],
                      policies={b"retry": "tries=3"})


def test_gearmand_runs_jobs_geartrain_retried_and_nothing_else(backend: Backend, tmp_path: Path):
    jobs = [StoredJob(b"retry", b"r%03d" % i, b"r%03d;" % i, 1, tries=i % 2, history=HISTORY if i % 2 else b"")
            for i in range(N)]

    async def fill() -> None:
        store = backend.store()
        await store.open()
        try:
            await store.add(jobs)
            batch = _extras()
            batch.retried = [Retry(j.key, time.time() - 5, 3, HISTORY) for j in jobs[:5]]  # due: they run at once
            await store.settle(batch)
        finally:
            await store.close()

    asyncio.run(fill())
    gd = start_gearmand(tmp_path, *backend.gearmand_args)
    try:
        got = work(gd, "retry", N)
        assert sorted(got) == sorted(j.data.rstrip(b";") for j in jobs)
        assert count_until(backend, 0) == 0
    finally:
        gd.stop()


def test_geartrain_replays_what_gearmand_stored_beside_its_records(backend: Backend, tmp_path: Path):
    async def prepare() -> None:
        store = backend.store()
        await store.open()  # the table gets geartrain's columns, and the tables beside it
        try:
            old = StoredJob(b"gm", b"same", b"old", 1, tries=2, history=HISTORY)
            await store.add([old])
            batch = _extras()
            batch.done = [old.key]  # it ran: its row is gone, its retry record too
            await store.settle(batch)
        finally:
            await store.close()

    asyncio.run(prepare())
    gd = start_gearmand(tmp_path, *backend.gearmand_args)
    try:
        for i in range(N):
            assert gearman(gd, "-b", "-f", "gm", f"g{i:03d};").returncode == 0
        assert gearman(gd, "-b", "-u", "same", "-f", "gm", "new;").returncode == 0
        assert count_until(backend, N + 1) == N + 1, "gearmand did not store the jobs"
    finally:
        gd.stop()

    async def replay() -> None:
        store = backend.store()
        await store.open()
        try:
            got = {j.data: j for j in await store.replay()}
            assert sorted(got) == sorted([b"g%03d;" % i for i in range(N)] + [b"new;"])
            assert all((j.tries, j.history) == (0, b"") for j in got.values())
            assert got[b"new;"].unique == b"same"
            extras = await store.replay_extras()
            assert ([r.handle for r in extras.kept], [f.id for f in extras.failed], extras.policies) == (
                [b"H:x:1"], [1], {b"retry": "tries=3"})
            await store.settle(Settlement(done=[j.key for j in got.values()]))
        finally:
            await store.close()

    asyncio.run(replay())
    assert asyncio.run(backend.count()) == 0
