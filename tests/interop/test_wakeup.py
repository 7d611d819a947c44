"""Waking sleeping workers (NOOP) with --worker-wakeup, on both servers, observed from raw worker sockets."""

from __future__ import annotations

import pytest

from geartrain.protocol import T

from .wire import Wire, connect

pytestmark = pytest.mark.interop


def sleepers(server, n: int) -> list[Wire]:
    workers = [connect(server) for _ in range(n)]
    for w in workers:
        w.send(T.CAN_DO, b"f")
        w.send(T.PRE_SLEEP)
        w.send(T.ECHO_REQ, b"sync")
        w.expect(T.ECHO_RES)
    return workers


def noop_count(workers: list[Wire]) -> list[bytes]:
    return [w.quiet(0.3) for w in workers]


def test_wakeup_one_wakes_one_sleeper_per_job(start_any):
    server = start_any("--worker-wakeup", "1")
    workers = sleepers(server, 3)
    with connect(server) as c:
        c.submit(T.SUBMIT_JOB_BG, b"f", b"", b"one")
        got = noop_count(workers)
        noop = b"\0RES" + (T.NOOP).to_bytes(4, "big") + bytes(4)
        assert sorted(got) == [b"", b"", noop], got
        # the woken worker takes the job; the others stay asleep and are not woken again for it
        woken = workers[got.index(noop)]
        woken.send(T.GRAB_JOB)
        assert woken.expect(T.JOB_ASSIGN)[2] == b"one"
        assert noop_count(workers) == [b"", b"", b""]
    for w in workers:
        w.close()


def test_wakeup_zero_wakes_every_sleeper_once(start_any):
    server = start_any("--worker-wakeup", "0")
    workers = sleepers(server, 3)
    with connect(server) as c:
        c.submit(T.SUBMIT_JOB_BG, b"f", b"", b"one")
        c.submit(T.SUBMIT_JOB_BG, b"f", b"", b"two")
        noop = b"\0RES" + (T.NOOP).to_bytes(4, "big") + bytes(4)
        assert noop_count(workers) == [noop, noop, noop]  # one NOOP per sleep, not one per job
    for w in workers:
        w.close()
