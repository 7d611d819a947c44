"""Reference driver for scenarios 7 and 8: python-gearman's py3 fork (PyPI `pygearman`) as client or worker.

Not a dependency: bench/run.py runs this file with the interpreter given by --pygearman-python (a
throwaway venv with `pip install pygearman`); without one the pygearman rows are reported n/a.
  client: `pygearman_driver.py client --port P -n JOBS -k INFLIGHT -s SIZE` (batches of INFLIGHT jobs)
  worker: `pygearman_driver.py worker --port P -f FUNC` (echo, until SIGTERM)
"""

import argparse
import json
import resource
import signal
import sys
import time


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("mode", choices=["client", "worker"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("-f", "--function", default="echo")
    p.add_argument("-n", "--jobs", type=int, default=1000)
    p.add_argument("-k", "--inflight", type=int, default=100)
    p.add_argument("-s", "--size", type=int, default=64)
    p.add_argument("-w", "--warmup", type=int, default=0)
    args = p.parse_args()
    try:
        import gearman
    except ImportError as exc:
        print(json.dumps({"na": f"pygearman not installed in this interpreter ({exc})"}), flush=True)
        return 0
    server = f"127.0.0.1:{args.port}"
    if args.mode == "worker":
        count = [0]

        def echo(worker, job):
            count[0] += 1
            return job.data

        def bye(signum, frame):
            print(json.dumps({"mode": "pygearman-worker", "jobs": count[0], "worker_cpu": cpu()}), flush=True)
            sys.exit(0)

        signal.signal(signal.SIGTERM, bye)
        worker = gearman.GearmanWorker([server])
        worker.register_task(args.function.encode(), echo)
        worker.work()
        return 0
    client = gearman.GearmanClient([server])
    payload = b"x" * args.size

    def batch(n):
        requests = client.submit_multiple_jobs([dict(task=args.function.encode(), data=payload) for _ in range(n)],
                                               background=False, wait_until_complete=True)
        return sum(1 for r in requests if r.complete and r.result == payload)

    done = 0
    while done < args.warmup:
        done += batch(min(args.inflight, args.warmup - done))
    ok = sent = 0
    c0, t0 = cpu(), time.perf_counter()
    while sent < args.jobs:
        n = min(args.inflight, args.jobs - sent)
        ok += batch(n)
        sent += n
    elapsed = time.perf_counter() - t0
    print(json.dumps({"mode": "pygearman-client", "jobs": args.jobs, "ok": ok, "failed": args.jobs - ok,
                      "seconds": elapsed, "rate": ok / elapsed, "client_cpu": cpu() - c0}))
    return 0 if ok == args.jobs else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # noqa: BLE001 - reported to the harness as this side's failure
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        sys.exit(1)
