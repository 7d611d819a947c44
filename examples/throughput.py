"""Measure AsyncClient throughput: JOBS echo jobs, IN_FLIGHT at a time, against a running server and worker.

    python examples/throughput.py --host 127.0.0.1:4730 -f echo -n 200000 --in-flight 100
"""

from __future__ import annotations

import argparse
import asyncio
import time

from geartrain.client import AsyncClient
from geartrain.transport import run


async def main(args: argparse.Namespace) -> None:
    async with AsyncClient(args.host or None) as client:
        payload = b"x" * args.size
        await client.submit(args.function, payload)  # warm up the connection
        loop = asyncio.get_running_loop()
        done = 0
        finished = loop.create_future()
        window = asyncio.Semaphore(args.in_flight)

        def on_done(fut: asyncio.Future) -> None:
            nonlocal done
            window.release()
            fut.exception()
            done += 1
            if done == args.jobs and not finished.done():
                finished.set_result(None)

        t0 = time.perf_counter()
        for _ in range(args.jobs):
            await window.acquire()
            job = await client.submit_job(args.function, payload)
            job._done.add_done_callback(on_done)
        await finished
        dt = time.perf_counter() - t0
    print(f"{args.jobs} jobs in {dt:.2f}s: {args.jobs / dt:,.0f} jobs/s ({args.in_flight} in flight)")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", action="append", help="HOST[:PORT] of a job server (repeatable)")
    p.add_argument("-f", "--function", default="echo")
    p.add_argument("-n", "--jobs", type=int, default=100000)
    p.add_argument("--in-flight", type=int, default=100)
    p.add_argument("--size", type=int, default=10)
    run(main(p.parse_args()))
