"""The seed's fib client: runs fib(1) ... fib(N-1) as concurrent jobs and prints their sum (the last line).

    python examples/fib_client.py --host 127.0.0.1:4730 [--host other:4730 ...] -n 41

All jobs are submitted at once, largest first (so two workers finish together rather than one
waiting on the last, biggest job). On a terminal a progress bar (jobs done of jobs submitted) is
drawn on stderr; stdout carries only the sum.
"""

from __future__ import annotations

import argparse
import sys

import _path  # noqa: F401

from geartrain.client import AsyncClient, Task
from geartrain.transport import run


async def compute(hosts: list[str] | None, n: int, ascending: bool = False) -> int:
    numbers = range(1, n) if ascending else range(n - 1, 0, -1)
    tasks = [Task("fib", str(i)) for i in numbers]
    progress = None
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(TextColumn("fib jobs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=Console(stderr=True), transient=True)
        bar = progress.add_task("fib", total=len(tasks))
        progress.start()
    try:
        async with AsyncClient(hosts) as client:
            await client.run(tasks, on_done=lambda t: progress.advance(bar) if progress else None)
    finally:
        if progress:
            progress.stop()
    failed = [t for t in tasks if t.error is not None]
    if failed:
        raise SystemExit(f"fib_client: {len(failed)} job(s) failed, e.g. fib({failed[0].data}): {failed[0].error}")
    return sum(int(t.result) for t in tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", action="append", metavar="HOST[:PORT]", help="job server (repeatable)")
    parser.add_argument("-n", "--num", type=int, default=41, help="how many Fibonacci numbers (default 41)")
    parser.add_argument("--ascending", action="store_true", help="submit fib(1) first instead of fib(N-1)")
    args = parser.parse_args()
    print(run(compute(args.host, args.num, args.ascending)))


if __name__ == "__main__":
    main()
