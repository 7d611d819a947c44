"""Scenario 8 driver: one geartrain worker process (AsyncWorker, or Worker with --sync) echoing the workload.

Run by bench/run.py as `python bench/pyworker.py --port P -f FUNC`; serves until SIGTERM, then prints
one JSON line with the jobs it ran and its own CPU seconds. If the library is not importable it prints
{"na": reason} at once.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def echo(job: object) -> bytes:
    return job.raw  # type: ignore[attr-defined]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("-f", "--function", default="echo")
    p.add_argument("--sync", action="store_true", help="use the blocking Worker instead of AsyncWorker")
    args = p.parse_args()
    try:
        from geartrain.transport import run
        from geartrain.worker import AsyncWorker, Worker
    except ImportError as exc:
        print(json.dumps({"na": f"geartrain.worker not importable yet ({exc})"}), flush=True)
        return 0
    server = f"127.0.0.1:{args.port}"
    if args.sync:
        worker = Worker(server)
        worker.register(args.function, echo)
        done = worker.work(handle_signals=True)
    else:
        aworker = AsyncWorker(server)
        aworker.register(args.function, echo)

        async def serve() -> int:
            return await aworker.work(handle_signals=True)

        done = run(serve())
    print(json.dumps({"mode": "pyworker", "jobs": done, "worker_cpu": cpu()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
