"""Waking sleeping workers (NOOP) with --worker-wakeup, on both servers, observed from raw worker sockets."""

from __future__ import annotations

import time

import pytest

from geartrain.protocol import T

from .conftest import run, wait_workers
from .wire import Wire, connect, noops

pytestmark = pytest.mark.interop


def sleepers(server, n: int) -> list[Wire]:
    workers = [connect(server) for _ in range(n)]
    for w in workers:
        w.send(T.CAN_DO, b"f")
        w.send(T.PRE_SLEEP)
        w.send(T.ECHO_REQ, b"sync")
        w.expect(T.ECHO_RES)
    return workers


def test_wakeup_one_wakes_one_sleeper_per_job(start_any):
    # these workers read their NOOPs but do not grab: a long --wakeup-timeout keeps the wake-up with the first
    server = start_any("--worker-wakeup", "1", ours=("--wakeup-timeout", "30"))
    workers = sleepers(server, 3)
    with connect(server) as c:
        c.submit(T.SUBMIT_JOB_BG, b"f", b"", b"one")
        got = noops(workers, 1)
        assert sorted(got) == [0, 0, 1], got
        # the woken worker takes the job; the others stay asleep and are not woken again for it
        woken = workers[got.index(1)]
        woken.send(T.GRAB_JOB)
        assert woken.expect(T.JOB_ASSIGN)[2] == b"one"
        assert noops(workers, 0, timeout=0) == [0, 0, 0]
    for w in workers:
        w.close()


def test_wakeup_zero_wakes_every_sleeper_once(start_any):
    server = start_any("--worker-wakeup", "0")
    workers = sleepers(server, 3)
    with connect(server) as c:
        c.submit(T.SUBMIT_JOB_BG, b"f", b"", b"one")
        c.submit(T.SUBMIT_JOB_BG, b"f", b"", b"two")
        assert noops(workers, 3) == [1, 1, 1]  # one NOOP per sleep, not one per job
    for w in workers:
        w.close()


def test_a_registered_worker_that_never_reads_does_not_hold_a_job_back(start_any, c_programs, background):
    # a process that registered and went to sleep, then stopped reading its connection (Perl's test suite forks
    # the work off and leaves the parent's connection idle; a worker stuck in a long pause; a half-dead host):
    # it is asleep longest, so it is woken first. geartrain passes the wake-up on after --wakeup-timeout, gearmand
    # wakes every sleeper; either way the libgearman worker beside it runs the job
    server = start_any()
    with connect(server) as deaf:
        deaf.send(T.CAN_DO, b"rev")
        deaf.send(T.PRE_SLEEP)
        deaf.send(T.ECHO_REQ, b"sync")
        deaf.expect(T.ECHO_RES)  # from here on it reads nothing
        background([str(c_programs["gt_worker"]), "-p", str(server.port), "-f", "rev"])
        wait_workers(server, b"rev", count=2)
        time.sleep(0.3)  # the C worker finds no job and goes to sleep too
        for i in range(3):
            out = run([str(c_programs["gt_client"]), "-p", str(server.port), "submit", "fg", "rev", "-", f"job{i}"],
                      timeout=20)
            assert out.returncode == 0, out.stderr
            assert out.stdout.splitlines()[1:] == [f"COMPLETE 4 {i}boj".encode()]
