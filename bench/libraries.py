"""Throughput of the client and worker libraries against the C gearmand (or our server), with C peers.

    python bench/libraries.py [--jobs 200000] [--server gearmand|geartrain] [--repeat 3]

(a) our AsyncClient (bench/pyclient.py, scenario 7's driver), 100 jobs in flight, against two
(--c-workers) C echo workers (tests/examples/echo_worker.c);
(b) one Python echo worker process (AsyncWorker, inline handler, 32 grabs in flight) serving the C
echo client (tests/examples/echo_client.c, 100 in flight); and, as a baseline for (a), the C echo
client in the AsyncClient's place. Needs cc and libgearman-dev.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import servers
from procs import BENCH, ROOT, last_json

SRC = ROOT / "tests" / "examples"

PY_WORKER = """
import sys
from geartrain.transport import run
from geartrain.worker import AsyncWorker
w = AsyncWorker(sys.argv[1], concurrency=int(sys.argv[2]), threads=False)
w.register("echo", lambda job: job.raw)
run(w.work(handle_signals=True))
"""


def build(tmp: str, name: str) -> str:
    out = f"{tmp}/{name}"
    subprocess.run(["cc", "-O2", "-o", out, str(SRC / f"{name}.c"), "-lgearman"], check=True)
    return out


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rate(text: str) -> float:
    m = re.search(r"([\d,]+) jobs/s", text)
    return float(m.group(1).replace(",", "")) if m else 0.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=200000)
    p.add_argument("--server", choices=["gearmand", "geartrain"], default="gearmand")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--grabs", type=int, default=32, help="the Python worker's jobs in flight")
    p.add_argument("--c-workers", type=int, default=2, help="C echo worker processes for (a)")
    args = p.parse_args()
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/sbin:/usr/bin:/bin"}
    with tempfile.TemporaryDirectory(prefix="geartrain-libbench-") as tmp:
        worker_bin, client_bin = build(tmp, "echo_worker"), build(tmp, "echo_client")
        server = servers.start(args.server, Path(tmp))
        port = server.port
        address = f"127.0.0.1:{port}"
        best_a = best_b = best_c = 0.0
        try:
            for _ in range(args.repeat):
                workers = [subprocess.Popen([worker_bin, "127.0.0.1", str(port)]) for _ in range(args.c_workers)]
                time.sleep(0.3)
                out = subprocess.run([sys.executable, str(BENCH / "pyclient.py"), "--port", str(port),
                                      "-n", str(args.jobs), "-k", "100", "-s", "10"], capture_output=True, text=True,
                                     env=env)
                got = last_json(out.stdout) if out.returncode == 0 else {}
                print("AsyncClient -> C echo workers:", f"{got['rate']:,.0f} jobs/s ({got['failed']} failed)" if got
                      else out.stderr.strip(), flush=True)
                best_a = max(best_a, got.get("rate", 0.0))
                out = subprocess.run([client_bin, "127.0.0.1", str(port), str(args.jobs), "100"], capture_output=True,
                                     text=True)
                for w in workers:
                    stop(w)
                print("C echo client -> C echo workers (baseline):", out.stdout.strip() or out.stderr.strip(),
                      flush=True)
                best_c = max(best_c, rate(out.stdout))
                pyw = subprocess.Popen([sys.executable, "-c", PY_WORKER, address, str(args.grabs)], env=env)
                time.sleep(0.8)
                out = subprocess.run([client_bin, "127.0.0.1", str(port), str(args.jobs), "100"], capture_output=True,
                                     text=True)
                stop(pyw)
                print("C echo client -> Python worker:", out.stdout.strip() or out.stderr.strip(), flush=True)
                best_b = max(best_b, rate(out.stdout))
        finally:
            server.stop()
    print(f"best: AsyncClient {best_a:,.0f} jobs/s (the C client in its place: {best_c:,.0f}); "
          f"Python echo worker {best_b:,.0f} jobs/s ({args.server})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
