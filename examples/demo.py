"""`make demo`: the seed's experiment on this machine — fib jobs with one worker, then with two.

Starts a geartrain job server on a free port, runs examples/fib_client.py against it with one
examples/fib_worker.py process and then with two, and prints both times and the speedup (the
seed saw 66.955 s and 35.702 s, x1.88, with its C++ worker on two cores).

    python examples/demo.py [-n N] [--quick] [--server gearmand]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _path  # noqa: F401

from geartrain.adminclient import AdminClient

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo: the job server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("demo: the job server did not start")


def start_server(kind: str, port: int, tmp: str) -> subprocess.Popen:
    if kind == "gearmand":
        cmd = ["gearmand", "-L", "127.0.0.1", "-p", str(port), "-t", "1", "--log-file", f"{tmp}/gearmand.log"]
    else:
        cmd = [sys.executable, "-m", "geartrain", "serve", "-L", "127.0.0.1", "-p", str(port), "--queue", "memory",
               "--log-file", f"{tmp}/geartrain.log"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    wait_port(port, proc)
    return proc


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def timed_run(address: str, workers: int, n: int) -> tuple[float, str, list[int]]:
    procs = [subprocess.Popen([sys.executable, str(HERE / "fib_worker.py"), "--host", address, "--id", f"fib-{i}"],
                              env=_env(), stderr=subprocess.PIPE, text=True) for i in range(workers)]
    try:
        deadline = time.monotonic() + 15
        while (st := AdminClient(address).status().get("fib")) is None or st.workers < workers:
            if time.monotonic() > deadline:
                raise SystemExit("demo: the workers did not register")
            time.sleep(0.05)
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, str(HERE / "fib_client.py"), "--host", address, "-n", str(n)],
                             stdout=subprocess.PIPE, env=_env(), check=True)
        elapsed = time.perf_counter() - t0
    finally:
        for p in procs:
            stop(p)
    counts = []
    for p in procs:
        found = re.search(r"fib_worker: (\d+) jobs", p.stderr.read() if p.stderr else "")
        counts.append(int(found.group(1)) if found else 0)
    return elapsed, out.stdout.decode().strip().splitlines()[-1], counts


def _burn(n: int) -> float:
    from fib_worker import fib

    t0 = time.perf_counter()
    fib(n)
    return time.perf_counter() - t0


def parallel_capacity(n: int = 30) -> float:
    """How much faster two CPU-bound processes run than one, right now (2.0 on two idle cores)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_burn, [20, 20])  # warm up both processes
        single = min(pool.apply(_burn, (n,)), pool.apply(_burn, (n,)))
        t0 = time.perf_counter()
        pool.map(_burn, [n, n])
        return 2 * single / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--num", type=int, help="fib(1) ... fib(N-1) (default 41, or 24 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a small N, for tests")
    parser.add_argument("--server", choices=["geartrain", "gearmand"], default="geartrain")
    args = parser.parse_args()
    n = args.num or (24 if args.quick else 41)
    with tempfile.TemporaryDirectory(prefix="geartrain-demo-") as tmp:
        port = free_port()
        server = start_server(args.server, port, tmp)
        address = f"127.0.0.1:{port}"
        try:
            print(f"{args.server} on {address}; fib(1) ... fib({n - 1}) as {n - 1} jobs", flush=True)
            one, sum1, _ = timed_run(address, 1, n)
            print(f"1 worker:  {one:8.3f} s   sum {sum1}", flush=True)
            two, sum2, counts = timed_run(address, 2, n)
            print(f"2 workers: {two:8.3f} s   sum {sum2}   (jobs per worker: {' + '.join(map(str, counts))})",
                  flush=True)
        finally:
            stop(server)
    if sum1 != sum2:
        print("demo: the two runs disagree", file=sys.stderr)
        return 1
    print(f"speedup:   x{one / two:.2f} (the seed: 66.955 s / 35.702 s = x1.88)")
    print(f"machine:   two CPU-bound processes run x{parallel_capacity():.2f} as fast as one right now "
          f"(x2.00 on two idle cores; other load on the machine lowers both figures)")
    print(f"sum: {sum1}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
