"""The seed's fib worker, in Python: registers `fib`; the workload is n in decimal, the result fib(n) in decimal.

    python examples/fib_worker.py --host 127.0.0.1:4730 [--host other:4730 ...]

fib(n) = 1 for n < 2, else fib(n-2) + fib(n-1), by naive recursion (the point is to burn CPU).
SIGTERM or Ctrl-C stops it after the job it is running.
"""

from __future__ import annotations

import argparse
import sys

import _path  # noqa: F401

from geartrain.worker import Worker, WorkerJob


def fib(n: int) -> int:
    if n < 2:
        return 1
    return fib(n - 2) + fib(n - 1)


def fib_job(job: WorkerJob) -> bytes:
    return str(fib(int(job.data))).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", action="append", metavar="HOST[:PORT]", help="job server (repeatable)")
    parser.add_argument("--id", help="client id shown by `geartrain admin workers`")
    args = parser.parse_args()
    worker = Worker(args.host or None, client_id=args.id)
    worker.register("fib", fib_job)
    done = worker.work()
    print(f"fib_worker: {done} jobs", file=sys.stderr)


if __name__ == "__main__":
    main()
