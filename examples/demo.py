"""`make demo`: the seed's experiment on this machine — fib jobs with one worker, then with two.

Starts a geartrain job server on a free port, runs examples/fib_client.py against it with one
examples/fib_worker.py process and then with two, and prints both times and the speedup beside the
seed's. It needs only Python and geartrain (`--server gearmand` needs the C gearmand: `make peers`).
Each step says what it does; while the jobs run, a live bar of jobs done (from the server's
`status`) is drawn on a terminal, and elsewhere (a pipe, a CI log) a line every --every seconds.

    python examples/demo.py [-n N] [--quick] [--server gearmand] [--every SECONDS]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _path  # noqa: F401
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
        gearmand = shutil.which("gearmand") or shutil.which("/usr/sbin/gearmand")
        if gearmand is None:
            raise SystemExit("demo: --server gearmand needs the C gearmand (`make peers` as root installs it)")
        cmd = [gearmand, "-L", "127.0.0.1", "-p", str(port), "-t", "1", "--log-file", f"{tmp}/gearmand.log"]
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


def jobs_done(address: str, total: int, seen: list[bool]) -> int | None:
    """How many of the TOTAL fib jobs are done, from the server's `status` (None before they are queued:
    an empty queue then means not yet submitted, not all done). SEEN remembers that they were."""
    try:
        st = AdminClient(address).status().get("fib")
    except OSError:
        return None
    if st is not None and st.total:
        seen[0] = True
    if not seen[0]:
        return None
    return total - (st.total if st is not None else 0)


def watch(finished: threading.Event, address: str, total: int, label: str, every: float) -> None:
    """Until FINISHED is set (the client exited), show how many of its TOTAL jobs are done: a live bar on a
    terminal, else a line at once and then every EVERY seconds. Runs in a thread of its own, so the
    run is timed by the client's exit alone."""
    seen = [False]
    console = Console()
    started = time.monotonic()
    if console.is_terminal:
        with Progress(TextColumn(f"  {label}"), BarColumn(), MofNCompleteColumn(), TextColumn("jobs"),
                      TimeElapsedColumn(), console=console, transient=True) as progress:
            bar = progress.add_task(label, total=total)
            while not finished.wait(0.2):
                progress.update(bar, completed=jobs_done(address, total, seen) or 0)
        return
    while True:
        done = jobs_done(address, total, seen)
        print(f"  {label}: {done or 0} of {total} jobs done, {time.monotonic() - started:.0f} s", flush=True)
        if finished.wait(every):
            return


def timed_run(address: str, workers: int, n: int, every: float) -> tuple[float, str, list[int]]:
    label = f"{workers} worker{'s' if workers > 1 else ''}"
    print(f"{label}: starting {workers} fib_worker.py process{'es' if workers > 1 else ''} ...", flush=True)
    procs = [subprocess.Popen([sys.executable, str(HERE / "fib_worker.py"), "--host", address, "--id", f"fib-{i}"],
                              env=_env(), stderr=subprocess.PIPE, text=True) for i in range(workers)]
    try:
        deadline = time.monotonic() + 15
        while (st := AdminClient(address).status().get("fib")) is None or st.workers < workers:
            if time.monotonic() > deadline:
                raise SystemExit("demo: the workers did not register")
            time.sleep(0.05)
        print(f"{label}: fib_client.py submits fib(1) ... fib({n - 1}), largest first", flush=True)
        finished = threading.Event()
        watcher = threading.Thread(target=watch, args=(finished, address, n - 1, label, every))
        watcher.start()
        try:
            t0 = time.perf_counter()
            client = subprocess.run([sys.executable, str(HERE / "fib_client.py"), "--host", address, "-n", str(n)],
                                    capture_output=True, env=_env())
            elapsed = time.perf_counter() - t0
        finally:
            finished.set()
            watcher.join()
        out, err = client.stdout, client.stderr
        if client.returncode != 0:
            raise SystemExit(f"demo: fib_client.py failed ({client.returncode}): {err.decode().strip()}")
    finally:
        for p in procs:
            stop(p)
    counts = []
    for p in procs:
        found = re.search(r"fib_worker: (\d+) jobs", p.stderr.read() if p.stderr else "")
        counts.append(int(found.group(1)) if found else 0)
    return elapsed, out.decode().strip().splitlines()[-1], counts


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
    parser.add_argument("--every", type=float, default=10.0, metavar="SECONDS",
                        help="off a terminal, print how many jobs are done this often (default 10)")
    args = parser.parse_args()
    n = args.num or (24 if args.quick else 41)
    with tempfile.TemporaryDirectory(prefix="geartrain-demo-") as tmp:
        port = free_port()
        server = start_server(args.server, port, tmp)
        address = f"127.0.0.1:{port}"
        try:
            print(f"{args.server} on {address}; fib(1) ... fib({n - 1}) as {n - 1} jobs", flush=True)
            one, sum1, _ = timed_run(address, 1, n, args.every)
            print(f"1 worker:  {one:8.3f} s   sum {sum1}", flush=True)
            two, sum2, counts = timed_run(address, 2, n, args.every)
            print(f"2 workers: {two:8.3f} s   sum {sum2}   (jobs per worker: {' + '.join(map(str, counts))})",
                  flush=True)
        finally:
            stop(server)
    if sum1 != sum2:
        print("demo: the two runs disagree", file=sys.stderr)
        return 1
    print(f"speedup:   x{one / two:.2f} (the seed: 66.955 s / 35.702 s = x1.88)", flush=True)
    step = "machine:   measuring how much faster two CPU-bound processes run than one right now ..."
    console = Console()
    if console.is_terminal:
        with console.status(step):
            capacity = parallel_capacity()
    else:
        print(step, flush=True)
        capacity = parallel_capacity()
    print(f"machine:   two CPU-bound processes run x{capacity:.2f} as fast as one right now "
          f"(x2.00 on two idle cores; other load on the machine lowers both figures)")
    print(f"sum: {sum1}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
