"""How much of the SQLite queue's reserve (sqlite.RESERVE) the deletes of finished jobs use on a full disk.

    .venv/bin/python bench/sqlite_reserve.py     (as root: it mounts a tmpfs under /tmp, and unmounts it)

For each case: store N jobs (and TAIL more just before the disk fills, so the WAL holds frames
not yet checkpointed), fill the filesystem to the last byte, delete every job in batches of 512
as the server does, and print how much of the reserve that took. Nothing asserted: the figures
are for docs/reliability.md; tests/server/store/test_stores.py tests the behaviour.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from geartrain.server.store.base import Settlement, StoredJob  # noqa: E402
from geartrain.server.store.sqlite import RESERVE, SQLiteStore  # noqa: E402
from tests.server.store.backends import fill  # noqa: E402

#: (jobs, payload bytes, jobs added just before the disk fills)
CASES = [(1000, 64, 0), (10_000, 64, 0), (100_000, 64, 0), (100_000, 64, 900), (10_000, 4096, 0),
         (10_000, 4096, 900), (100_000, 1024, 3000), (200_000, 4096, 0)]


def free(path: Path) -> int:
    fs = os.statvfs(path)
    return fs.f_bavail * fs.f_frsize


async def case(where: Path, n: int, size: int, tail: int) -> None:
    for f in where.iterdir():
        f.unlink()
    store = SQLiteStore(where / "q.sqlite")
    await store.open()
    try:
        jobs = [StoredJob(b"f", b"u%d" % i, os.urandom(size), 1) for i in range(n + tail)]
        for i in range(0, n, 512):
            await store.add(jobs[i:min(i + 512, n)])
        for i in range(n, n + tail, 512):
            await store.add(jobs[i:min(i + 512, n + tail)])
        wal = os.path.getsize(where / "q.sqlite-wal")
        fill(where)
        before = free(where)
        for i in range(0, len(jobs), 512):
            await store.settle(Settlement(done=[j.key for j in jobs[i:i + 512]]))
        used = RESERVE - (free(where) - before)
        left = len(await store.replay())
    finally:
        await store.close()
    print(f"{n:>8,} jobs of {size:>5} B, {tail:>5} just before: WAL {wal >> 10:>6,} KiB when the disk filled; "
          f"reserve used {used >> 10:>6,} of {RESERVE >> 10:,} KiB; jobs left {left}", flush=True)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200m", "tmpfs", str(where)], check=True)
        try:
            for n, size, tail in CASES:
                await case(where, n, size, tail)
        finally:
            subprocess.run(["umount", str(where)], check=False)


if __name__ == "__main__":
    asyncio.run(main())
