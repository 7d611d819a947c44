"""End-to-end background submit rate on each durable queue, geartrain next to the C gearmand:
3,000 SUBMIT_JOB_BG of 64 bytes (distinct uniques), 1,000 in flight on one connection, no worker.

    .venv/bin/python bench/store_submit.py [--jobs 3000] [--window 1000] [--runs 3] [kinds...]

kinds: memory sqlite postgres mysql redis. Each run uses a fresh table / prefix, dropped afterwards.
Not a test (nothing asserted); the best of --runs is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

from procs import ROOT

sys.path.insert(0, str(ROOT))  # the tests' helpers: a fresh table or prefix per run, the services started

from geartrain.protocol.codec import Parser, pack_req  # noqa: E402
from geartrain.protocol.packets import RES, T  # noqa: E402
from tests.conftest import Server, start_gearmand, start_geartrain  # noqa: E402
from tests.server.store.backends import Backend, need_service  # noqa: E402


def submit(server: Server, jobs: int, window: int) -> float:
    """Submit JOBS background jobs keeping WINDOW unanswered; jobs/s."""
    sock = socket.create_connection((server.host, server.port), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    parser = Parser(expect=RES)
    tag = uuid.uuid4().hex[:8].encode()
    data = b"x" * 64

    def packets(start: int, count: int) -> bytes:
        return b"".join(pack_req(T.SUBMIT_JOB_BG, b"bench", b"%s-%d" % (tag, i), data)
                        for i in range(start, start + count))

    started = time.perf_counter()
    sent = min(window, jobs)
    sock.sendall(packets(0, sent))
    answered = errors = 0
    while answered < jobs:
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("server closed the connection")
        events = parser.feed(chunk)
        answered += len(events)
        errors += sum(1 for ptype, _ in events if ptype != T.JOB_CREATED)
        more = min(len(events), jobs - sent)
        if more:
            sock.sendall(packets(sent, more))
            sent += more
    elapsed = time.perf_counter() - started
    sock.close()
    if errors:
        raise RuntimeError(f"{errors} submissions failed")
    return jobs / elapsed


def run(kind: str, which: str, jobs: int, window: int, tmp: Path) -> float:
    if kind == "memory":
        server = start_geartrain(tmp, "--queue", "memory") if which == "geartrain" else start_gearmand(tmp)
        try:
            return submit(server, jobs, window)
        finally:
            server.stop()
    need_service(kind)
    backend = Backend(kind, tmp)
    server = (start_geartrain(tmp, "--queue", backend.url) if which == "geartrain"
              else start_gearmand(tmp, *backend.gearmand_args))
    try:
        return submit(server, jobs, window)
    finally:
        server.stop()
        asyncio.run(backend.drop())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("kinds", nargs="*", default=["memory", "sqlite", "postgres", "mysql", "redis"])
    args = parser.parse_args()
    print(f"{'queue':10} {'geartrain/s':>12} {'gearmand/s':>12} {'ratio':>7}   "
          f"({args.jobs} bg jobs x 64 B, {args.window} in flight, best of {args.runs})")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds:
            ours = max(run(kind, "geartrain", args.jobs, args.window, Path(tmp)) for _ in range(args.runs))
            theirs = max(run(kind, "gearmand", args.jobs, args.window, Path(tmp)) for _ in range(args.runs))
            print(f"{kind:10} {ours:12,.0f} {theirs:12,.0f} {ours / theirs:7.1f}")


if __name__ == "__main__":
    main()
