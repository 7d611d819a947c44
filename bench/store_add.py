"""Raw store throughput: add() of batches of 1,000 background jobs with 64-byte payloads, settle() with
the same batches done, and replay, for each backend on this machine's database servers.

    .venv/bin/python bench/store_add.py [--batches 20] [--batch 1000] [sqlite postgres ...]

Each backend gets a fresh table / prefix, dropped afterwards. Not a test (nothing asserted):
the numbers are for the report and the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from procs import ROOT

sys.path.insert(0, str(ROOT))  # the tests' helpers: a fresh table or prefix per run, the services started

from geartrain.server.store.base import Settlement, StoredJob  # noqa: E402
from tests.server.store.backends import KINDS, Backend, need_service  # noqa: E402


async def bench(kind: str, batches: int, size: int, tmp: Path) -> dict[str, float]:
    backend = Backend(kind, tmp)
    store = backend.store()
    await store.open()
    try:
        batch_list = [[StoredJob(b"bench", b"u%d-%d" % (b, i), b"x" * 64, 1) for i in range(size)]
                      for b in range(batches)]
        started = time.perf_counter()
        for batch in batch_list:
            await store.add(batch)
        add_rate = batches * size / (time.perf_counter() - started)
        started = time.perf_counter()
        n = 0
        async for got in store.replay_batches():
            n += len(got)
        replay_rate = n / (time.perf_counter() - started)
        started = time.perf_counter()
        for batch in batch_list:
            await store.settle(Settlement(done=[j.key for j in batch]))
        done_rate = batches * size / (time.perf_counter() - started)
        return {"add": add_rate, "replay": replay_rate, "done": done_rate}
    finally:
        await store.close()
        await backend.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("kinds", nargs="*", default=KINDS)
    args = parser.parse_args()
    print(f"{'backend':10} {'add jobs/s':>12} {'done jobs/s':>12} {'replay jobs/s':>14}   "
          f"({args.batches} batches of {args.batch} x 64-byte jobs)")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds:
            need_service(kind)
            r = asyncio.run(bench(kind, args.batches, args.batch, Path(tmp)))
            print(f"{kind:10} {r['add']:12,.0f} {r['done']:12,.0f} {r['replay']:14,.0f}")


if __name__ == "__main__":
    main()
