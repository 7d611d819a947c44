"""Scenario 7 driver: geartrain's AsyncClient submitting foreground echo jobs, N in flight; prints one JSON line.

Run by bench/run.py as `python bench/pyclient.py --port P -n JOBS -k INFLIGHT -s SIZE`. If the library is
not importable it prints {"na": reason} so the harness reports n/a instead of failing.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def drive(args: argparse.Namespace) -> dict:
    from geartrain.client import AsyncClient, Task

    payload = b"x" * args.size
    async with AsyncClient(f"127.0.0.1:{args.port}") as client:
        if args.warmup:
            await client.run([Task(args.function, payload) for _ in range(args.warmup)], max_in_flight=args.inflight)
        tasks = [Task(args.function, payload) for _ in range(args.jobs)]
        c0, t0 = cpu(), time.perf_counter()
        await client.run(tasks, max_in_flight=args.inflight)
        elapsed, used = time.perf_counter() - t0, cpu() - c0
    ok = sum(1 for t in tasks if t.error is None and t.result == payload)
    errors = {repr(t.error) for t in tasks if t.error is not None}
    return {"mode": "pyclient", "jobs": args.jobs, "ok": ok, "failed": args.jobs - ok, "seconds": elapsed,
            "rate": ok / elapsed if elapsed else 0.0, "client_cpu": used, "errors": sorted(errors)[:3]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("-f", "--function", default="echo")
    p.add_argument("-n", "--jobs", type=int, default=1000)
    p.add_argument("-k", "--inflight", type=int, default=100)
    p.add_argument("-s", "--size", type=int, default=64)
    p.add_argument("-w", "--warmup", type=int, default=0)
    args = p.parse_args()
    try:
        from geartrain.client import AsyncClient, Task  # noqa: F401
        from geartrain.transport import run
    except ImportError as exc:
        print(json.dumps({"na": f"geartrain.client.AsyncClient not importable yet ({exc})"}))
        return 0
    result = run(drive(args))
    print(json.dumps(result))
    return 0 if result["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
