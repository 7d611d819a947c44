"""What the server remembers of jobs that ended, for the dashboard: the lifecycle's ring of recent ends (one
entry per ended job, whatever ended it) and each worker's count of how its runs ended."""

from __future__ import annotations

from geartrain.protocol.packets import T
from geartrain.server.jobs import RAN_COMPLETE, RAN_FAILED, RAN_TAKEN_BACK
from geartrain.server.lifecycle import RECENT_LIMIT, RECENT_TEXT
from geartrain.server.policy import parse

from .helpers import Harness


def run(h: Harness, worker, ptype: int, *args: bytes, ran: float = 0.0) -> bytes:
    kind, (handle, *_) = h.grab(worker)
    assert kind == "JOB_ASSIGN", kind
    h.state.now += ran
    h.send(worker, ptype, handle, *args)
    return handle


def test_each_end_leaves_one_entry_with_its_worker_and_run_time():
    h = Harness()
    c, w = h.peer(), h.worker(b"f")
    start = h.state.now
    done = h.submit(c, data=b"1")
    run(h, w, T.WORK_COMPLETE, b"result", ran=0.5)
    raised = h.submit(c, data=b"2")
    run(h, w, T.WORK_EXCEPTION, b"ValueError: bad\nTraceback ...", ran=0.25)
    failed = h.submit(c, data=b"3")
    run(h, w, T.WORK_FAIL)
    cancelled = h.submit(c, ptype=T.SUBMIT_JOB_BG, data=b"4")
    assert h.state.cancel(cancelled)
    recent = list(h.state.life.recent)
    assert [(e[0], e[1].name, e[2]) for e in recent] == [
        (done, b"f", "complete"), (raised, b"f", "exception"), (failed, b"f", "failed"), (cancelled, b"f", "failed")]
    assert [e[4] - e[3] for e in recent[:2]] == [0.5, 0.25] and recent[0][4] == start + 0.5
    assert [e[5] for e in recent] == [w, w, w, None]  # the cancelled job never ran
    assert recent[1][6] == b"ValueError: bad" and recent[0][6] == recent[2][6] == b""
    assert w.as_worker.ran == [0, 1, 2]  # taken back, completed, failed (WORK_FAIL and exception)


def test_a_job_taken_back_or_retried_has_not_ended():
    h = Harness()
    h.state.life.set_policy(h.state.function(b"r"), parse("tries=2 delay=1"))
    c = h.peer()
    h.submit(c, name=b"f", ptype=T.SUBMIT_JOB_BG)
    w1 = h.worker(b"f")
    h.grab(w1)
    h.state.disconnect(w1)  # requeued for another worker
    assert w1.as_worker.ran[RAN_TAKEN_BACK] == 1 and not h.state.life.recent
    h.submit(c, name=b"r", ptype=T.SUBMIT_JOB_BG)
    w2 = h.worker(b"r")
    run(h, w2, T.WORK_EXCEPTION, b"first try")  # waits for its second try
    assert w2.as_worker.ran[RAN_FAILED] == 1 and not h.state.life.recent
    h.tick(1)
    run(h, w2, T.WORK_COMPLETE, b"ok")
    assert [e[2] for e in h.state.life.recent] == ["complete"] and w2.as_worker.ran[RAN_COMPLETE] == 1


def test_a_timed_out_job_is_taken_back_from_its_worker_and_ends_failed():
    h = Harness()
    c, w = h.peer(), h.peer()
    h.send(w, T.CAN_DO_TIMEOUT, b"f", b"2")
    handle = h.submit(c)
    h.grab(w)
    h.tick(3)
    assert w.as_worker.ran == [1, 0, 0]
    (entry,) = h.state.life.recent
    assert (entry[0], entry[2], entry[5]) == (handle, "failed", w)


def test_the_ring_is_bounded_and_keeps_the_newest():
    h = Harness()
    c, w = h.peer(), h.worker(b"f")
    handles = []
    for i in range(RECENT_LIMIT + 5):
        h.submit(c, data=b"%d" % i)
        handles.append(run(h, w, T.WORK_EXCEPTION, b"x" * (RECENT_TEXT * 2)))
    recent = h.state.life.recent
    assert len(recent) == RECENT_LIMIT and recent[0][0] == handles[5] and recent[-1][0] == handles[-1]
    assert len(recent[-1][6]) == RECENT_TEXT
