"""Waking sleeping workers (NOOP) with --worker-wakeup, on both servers, observed from raw worker sockets."""

from __future__ import annotations

import pytest

from geartrain.protocol import T

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
    server = start_any("--worker-wakeup", "1")
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
