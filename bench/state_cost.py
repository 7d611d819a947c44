"""In-process cost of one foreground job on the server's hot path: instructions per job, counted by callgrind.

A State with one client and one worker (function ``echo``) gets scenario 1's traffic as byte streams through the
codec, as a connection hands them over: the client's ``SUBMIT_JOB`` (with a UUID unique, as libgearman sends),
the worker's ``WORK_COMPLETE`` of its last job with its next ``GRAB_JOB_UNIQ`` in one read (the grab waits for
the next job); after each read the waiting grabs are answered and the peers' output is taken, as the flush does.
No sockets, no event loop: what is left is the parsing, the job logic and the replies.

    python bench/state_cost.py --jobs 20000          # run it (wall time per job; quick check)
    python bench/state_cost.py --callgrind           # instructions per job: two callgrind runs (N and 2N jobs),
                                                     # the difference divided by N, so start-up does not count
    python bench/state_cost.py --callgrind --no-fast-paths   # the general rules only: what the fast paths save
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid

from geartrain.protocol.codec import Parser, pack_req
from geartrain.protocol.packets import REQ, T
from geartrain.server.state import State

PREFIX = b"H:bench"


def streams(n: int, size: int) -> tuple[list[bytes], list[bytes]]:
    """The client's and the worker's reads for N jobs of SIZE bytes (built before anything is timed)."""
    data = b"x" * size
    client = [pack_req(T.SUBMIT_JOB, b"echo", str(uuid.UUID(int=i)).encode(), data) for i in range(n)]
    grab = pack_req(T.GRAB_JOB_UNIQ)
    worker = [pack_req(T.WORK_COMPLETE, b"%s:%d" % (PREFIX, i), data) + grab for i in range(1, n + 1)]
    return client, worker


def run(n: int, size: int, fast: bool = True) -> float:
    """Play N jobs (FAST: with the lifecycle's fast paths); return the wall time of the played part."""
    client_reads, worker_reads = streams(n, size)
    state = State(handle_prefix=PREFIX, now=1.0, defer_no_job=True, grab_wait=150e-6)  # as the server runs it
    state.life.fast = fast
    dispatch = state.dispatch
    take = state.take_output
    workers = state.workers
    client, worker = state.connect(10, "127.0.0.1"), state.connect(11, "127.0.0.1")
    client_parser, worker_parser = Parser(REQ), Parser(REQ)
    for ptype, args in worker_parser.feed(pack_req(T.CAN_DO, b"echo") + pack_req(T.GRAB_JOB_UNIQ)):
        dispatch[ptype](worker, args)
    started = time.perf_counter()
    for c, w in zip(client_reads, worker_reads, strict=True):
        for ptype, args in client_parser.feed(c):
            dispatch[ptype](client, args)
        if workers.grabs or workers.unwoken:  # as the flush does: the waiting grab takes the job
            workers.retry_grabs(1.0)
        state.outbox.drain()
        take(client)
        take(worker)  # JOB_ASSIGN_UNIQ (the grab waited for this job)
        for ptype, args in worker_parser.feed(w):
            dispatch[ptype](worker, args)
        state.outbox.drain()
        take(client)  # WORK_COMPLETE
        take(worker)
    elapsed = time.perf_counter() - started
    assert state.life.completed == n, (state.life.completed, n)
    return elapsed


def callgrind_total(n: int, size: int, fast: bool) -> int:
    """Instructions callgrind counts for a whole run of N jobs."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        done = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                               __file__, "--jobs", str(n), "--size", str(size), *([] if fast else ["--no-fast-paths"])],
                              capture_output=True, text=True, check=True)
        match = re.search(r"Collected : (\d+)", done.stderr)
        if match is None:
            raise RuntimeError(f"no total in callgrind's output: {done.stderr[-2000:]}")
        return int(match.group(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=20000)
    p.add_argument("--size", type=int, default=64, help="payload bytes (default 64, scenario 1's)")
    p.add_argument("--callgrind", action="store_true", help="instructions per job (runs valgrind twice)")
    p.add_argument("--no-fast-paths", dest="fast", action="store_false",
                   help="Lifecycle.fast = False: the general rules only (what the fast paths save)")
    args = p.parse_args()
    label = "fast paths" if args.fast else "no fast paths"
    if args.callgrind:
        n = args.jobs
        small, big = callgrind_total(n, args.size, args.fast), callgrind_total(2 * n, args.size, args.fast)
        print(f"{label}; {args.size} B jobs: {(big - small) / n:,.0f} instructions per job "
              f"(callgrind: {small:,} for {n:,} jobs, {big:,} for {2 * n:,})")
        return
    elapsed = run(args.jobs, args.size, args.fast)
    print(f"{label}; {args.jobs:,} jobs of {args.size} B: {elapsed / args.jobs * 1e6:.2f} µs "
          "per job (wall, in process)")


if __name__ == "__main__":
    main()
