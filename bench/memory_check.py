"""Memory of a server holding a million queued background jobs, and its submit rate as the queue grows.

Not a test; run it by hand on a quiet machine:

    .venv/bin/python bench/memory_check.py                 # both paths, 1,000,000 jobs
    .venv/bin/python bench/memory_check.py --jobs 200000 --path memory

Path ``memory``: `geartrain serve --queue memory`, then RUNS rounds of JOBS/RUNS SUBMIT_JOB_BG of
SIZE bytes, each with its own unique, no worker; after each round the server's RSS (from /proc) and
that round's submit rate. Path ``sqlite``: the same into `--queue sqlite:///TMP`, then the server is
stopped and started again, and the RSS after replaying every job is reported.

The load comes from bench/build/loadgen (libgearman, `loadgen client -b`) when it is built, else from
a small asyncio client here (slower: it then measures the client as much as the server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procs import LOADGEN, ROOT, free_port, wait_port

from geartrain.protocol.codec import Parser, pack_req
from geartrain.protocol.packets import RES, T


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of PID in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def start(port: int, queue: str, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "geartrain", "serve", "-L", "127.0.0.1", "-p", str(port),
                             "--queue", queue, "--log-file", str(log), "--verbose", "NOTICE"], cwd=ROOT)
    wait_port(port, proc, timeout=600)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _submit_py(port: int, n: int, size: int, inflight: int, tag: str) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    parser = Parser(RES, text=False)
    data = b"x" * size
    sent = got = 0
    t0 = time.perf_counter()
    while got < n:
        burst = []
        while sent < n and sent - got < inflight:
            burst.append(pack_req(T.SUBMIT_JOB_BG, b"memcheck", f"{tag}-{sent}".encode(), data))
            sent += 1
        if burst:
            writer.write(b"".join(burst))
        chunk = await reader.read(1 << 16)
        if not chunk:
            raise RuntimeError("server closed the connection")
        got += sum(1 for ptype, _ in parser.feed(chunk) if ptype == T.JOB_CREATED)
    writer.close()
    return n / (time.perf_counter() - t0)


def submit(port: int, n: int, size: int, inflight: int, tag: str) -> float:
    """Submit N background jobs; the rate (jobs/s)."""
    if LOADGEN.exists():
        out = subprocess.run([str(LOADGEN), "client", "-H", "127.0.0.1", "-p", str(port), "-f", "memcheck",
                              "-n", str(n), "-k", str(inflight), "-s", str(size), "-b"],
                             capture_output=True, text=True, check=True, timeout=1200)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        if result.get("failed"):
            raise RuntimeError(f"loadgen: {result}")
        return result["ok"] / result["seconds"]
    return asyncio.run(_submit_py(port, n, size, inflight, tag))


def queued(port: int) -> int:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"status\n")
        text = b""
        while not text.endswith(b".\n"):
            text += sock.recv(65536)
    for line in text.decode().splitlines():
        parts = line.split("\t")
        if parts[0] == "memcheck":
            return int(parts[1])
    return 0


def run_path(path: str, jobs: int, runs: int, size: int, inflight: int, tmp: Path) -> dict:
    port = free_port()
    queue = "memory" if path == "memory" else f"sqlite:///{tmp / 'memcheck.sqlite'}"
    proc = start(port, queue, tmp / f"{path}.log")
    out: dict = {"path": path, "rounds": []}
    try:
        out["idle_rss_mb"] = round(rss_mb(proc.pid)[0], 1)
        per = jobs // runs
        for i in range(runs):
            rate = submit(port, per, size, inflight, f"r{i}")
            rss, hwm = rss_mb(proc.pid)
            row = {"queued": queued(port), "rate": round(rate), "rss_mb": round(rss, 1), "hwm_mb": round(hwm, 1)}
            out["rounds"].append(row)
            print(f"{path}: {row}", flush=True)
    finally:
        stop(proc)
    if path == "sqlite":
        t0 = time.perf_counter()
        proc = start(port, queue, tmp / f"{path}-replay.log")
        try:
            took = time.perf_counter() - t0
            rss, hwm = rss_mb(proc.pid)
            out["replay"] = {"queued": queued(port), "seconds": round(took, 1), "rss_mb": round(rss, 1),
                             "hwm_mb": round(hwm, 1)}
            print(f"{path} after restart: {out['replay']}", flush=True)
        finally:
            stop(proc)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5, help="rounds the jobs are submitted in (rate per round)")
    ap.add_argument("--size", type=int, default=64, help="payload bytes")
    ap.add_argument("--inflight", type=int, default=1000)
    ap.add_argument("--path", choices=["memory", "sqlite", "both"], default="both")
    args = ap.parse_args()
    print(f"load from {'loadgen' if LOADGEN.exists() else 'the asyncio client'}; {os.cpu_count()} cores", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="memcheck-") as tmp:
        for path in (["memory", "sqlite"] if args.path == "both" else [args.path]):
            results.append(run_path(path, args.jobs, args.runs, args.size, args.inflight, Path(tmp)))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
