"""`geartrain queue copy FROM TO` and `geartrain queue count URL` (cli/queue.py, server/store/transfer.py), run as
the command, on every pair of stores that matters (SQLite <-> PostgreSQL, MySQL, Redis; PostgreSQL <-> MySQL):
every kind of job arrives as it was (priority, run-at time, empty and "-" uniques, binary data, schedule,
reducer); a copy run twice does no more than once, and replaces a job TO already held under the same unique
and function; --move empties FROM. And from tables the real gearmand wrote (libsqlite3, Postgres, MySQL, redis),
whose jobs a geartrain server on TO then runs.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from geartrain.server.store.base import StoredJob
from tests.conftest import ROOT, start_gearmand, start_geartrain
from tests.interop.test_queue_migration import count_until, gearman, work
from tests.server.store.backends import KINDS, Backend, need_service

pytestmark = pytest.mark.timeout(240)

JOBS = [
    StoredJob(b"resize", b"img-1", b"first", 1),
    StoredJob(b"resize", b"img-2", b"\x00\xff binary", 0),
    StoredJob(b"resize", b"", b"no unique", 2),  # filed under a generated key
    StoredJob(b"resize", b"", b"no unique either", 1),
    StoredJob(b"report", b"-", b"coalesce by data", 1),
    StoredJob(b"report", b"monthly", b"", 1, when=2_000_000_000),
    StoredJob(b"report", b"after-2038", b"x", 2, when=5_000_000_000),
    StoredJob(b"cron", b"every-5", b"tick", 1, schedule=b"*/5 * * * *"),
    StoredJob(b"sum", b"r-1", b"1 2 3", 1, reducer=b"add"),
]

PAIRS = [("sqlite", "postgres"), ("postgres", "sqlite"), ("sqlite", "mysql"), ("mysql", "sqlite"),
         ("sqlite", "redis"), ("redis", "sqlite"), ("postgres", "mysql"), ("mysql", "postgres")]


def fields(job: StoredJob) -> tuple:
    return (job.function, job.unique, job.data, job.priority, job.when, job.reducer, job.schedule)


def stored(backend: Backend) -> list[tuple]:
    async def read() -> list[tuple]:
        store = backend.store()
        await store.open()
        try:
            return sorted(fields(job) for job in await store.replay())
        finally:
            await store.close()

    return asyncio.run(read())


def fill(backend: Backend, jobs: list[StoredJob]) -> None:
    async def write() -> None:
        store = backend.store()
        await store.open()
        try:
            await store.add([StoredJob(*fields(job)) for job in jobs])
        finally:
            await store.close()

    asyncio.run(write())


def queue(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "geartrain", "queue", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


@pytest.fixture
def spots(tmp_path: Path) -> Iterator[dict[str, Backend]]:
    made: dict[str, Backend] = {}

    def make(kind: str) -> Backend:
        need_service(kind)
        made[kind] = Backend(kind, tmp_path)
        return made[kind]

    yield make  # type: ignore[misc]
    for backend in made.values():
        asyncio.run(backend.drop())


@pytest.mark.parametrize(("source_kind", "target_kind"), PAIRS, ids=[f"{a}-to-{b}" for a, b in PAIRS])
def test_copy_between_stores(spots, source_kind: str, target_kind: str):
    source, target = spots(source_kind), spots(target_kind)
    fill(source, JOBS)
    fill(target, [StoredJob(b"resize", b"img-1", b"an older copy", 2), StoredJob(b"other", b"o", b"kept", 1)])
    want = sorted(fields(job) for job in JOBS)

    done = queue("copy", source.url, target.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "cron\t1\nreport\t3\nresize\t4\nsum\t1\n"
    assert f"copied {len(JOBS)} job(s) from {source_kind} " in done.stderr
    # every job as it was; the one under the same unique and function replaced; TO's own kept
    assert stored(target) == sorted([*want, (b"other", b"o", b"kept", 1, 0, b"", b"")])
    assert stored(source) == want  # a copy leaves FROM as it was

    again = queue("copy", source.url, target.url)  # idempotent: keyed by unique and function
    assert again.returncode == 0, again.stderr
    assert stored(target) == sorted([*want, (b"other", b"o", b"kept", 1, 0, b"", b"")])

    moved = queue("copy", "--move", "--batch", "2", source.url, target.url)
    assert moved.returncode == 0 and f"deleted {len(JOBS)} from {source_kind}" in moved.stderr, moved.stderr
    assert stored(source) == [] and len(stored(target)) == len(JOBS) + 1

    count = queue("count", target.url)
    assert count.returncode == 0 and count.stdout == "cron\t1\nother\t1\nreport\t3\nresize\t4\nsum\t1\n"
    assert f"{len(JOBS) + 1} job(s) in {target_kind} " in count.stderr


def test_refusals(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/q.sqlite"
    assert "FROM and TO are the same queue" in queue("copy", url, url).stderr
    missing = queue("copy", f"sqlite:///{tmp_path}/nope.sqlite", url)
    assert missing.returncode != 0 and "no such SQLite file" in missing.stderr
    assert not (tmp_path / "nope.sqlite").exists()
    assert "keeps nothing" in queue("copy", "memory", url).stderr
    assert "unknown parameter 'tabel'" in queue("count", url + "?tabel=x").stderr


@pytest.mark.interop
@pytest.mark.parametrize("kind", KINDS)
def test_copy_from_a_table_gearmand_wrote_and_run_the_jobs_on_geartrain(spots, tmp_path: Path, kind: str):
    source = spots(kind)
    target = spots("postgres" if kind == "sqlite" else "sqlite")
    gd = start_gearmand(tmp_path, *source.gearmand_args)
    try:
        payloads = [f"g{i:02d};" for i in range(20)]
        assert gearman(gd, "-b", "-f", "mig", *payloads).returncode == 0
        assert gearman(gd, "-b", "-I", "-u", "urgent", "-f", "mig", "high;").returncode == 0
        assert count_until(source, 21) == 21, "gearmand did not store the jobs"
    finally:
        gd.stop()

    done = queue("copy", "--move", source.url, target.url)
    assert done.returncode == 0 and done.stdout == "mig\t21\n", done.stderr
    assert asyncio.run(source.count()) == 0

    gt = start_geartrain(tmp_path, "--queue", target.url)
    try:
        got = work(gt, "mig", 21)
        assert sorted(got) == sorted([p.rstrip(";").encode() for p in payloads] + [b"high"])
        assert count_until(target, 0) == 0
    finally:
        gt.stop()
