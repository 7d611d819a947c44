"""server/workers.py: deferred grabs. A grab that finds no job waits (the loop turn, or grab_wait) for one
before it gets NO_JOB, so a job submitted meanwhile costs the worker no NO_JOB/PRE_SLEEP/NOOP round trip."""

from __future__ import annotations

from geartrain.protocol.packets import T

from .helpers import Harness

NOW = 1_000_000.0


def deferring(wait: float = 0.0) -> Harness:
    return Harness(defer_no_job=True, grab_wait=wait, now=NOW)


def test_a_grab_answered_with_the_job_submitted_in_the_same_turn_instead_of_no_job():
    h = deferring()
    client, worker = h.peer(), h.worker(b"f")
    h.send(worker, T.GRAB_JOB_UNIQ)
    assert h.got(worker) == []  # its answer waits in its place
    handle = h.submit(client, data=b"d")
    assert h.state.retry_grabs(NOW) is True
    assert h.got(worker) == [("JOB_ASSIGN_UNIQ", (handle, b"f", b"", b"d"))]
    assert h.state.workers.grabs == []
    assert h.state.jobs[handle].worker is worker
    h.send(worker, T.WORK_COMPLETE, handle, b"r")
    assert h.got(client) == [("WORK_COMPLETE", (handle, b"r"))]


def test_a_grab_gets_no_job_once_its_wait_is_over_and_keeps_waiting_before():
    h = deferring(wait=0.5)
    worker = h.worker(b"f")
    h.send(worker, T.GRAB_JOB)
    assert h.state.retry_grabs(NOW + 0.1) is False  # no job yet, still within its wait
    assert h.got(worker) == [] and len(h.state.workers.grabs) == 1
    assert h.state.retry_grabs(NOW + 0.5) is True
    assert h.got(worker) == [("NO_JOB", ())]
    assert h.state.workers.grabs == []


def test_replies_after_a_deferred_grab_stay_behind_its_answer():
    h = deferring()
    client, worker = h.peer(), h.worker(b"f")
    h.send(worker, T.GRAB_JOB)
    h.send(worker, T.ECHO_REQ, b"ping")  # pipelined behind the grab
    h.submit(client)
    h.state.retry_grabs(NOW)
    assert h.names(worker) == ["JOB_ASSIGN", "ECHO_RES"]


def test_a_worker_that_went_to_sleep_after_its_grab_gets_no_job_then_its_wake_up():
    h = deferring(wait=1.0)
    client, worker = h.peer(), h.worker(b"f")
    h.send(worker, T.GRAB_JOB)
    h.send(worker, T.PRE_SLEEP)
    h.submit(client)  # wakes the sleeper
    h.state.retry_grabs(NOW)  # within the wait, but it sleeps: NO_JOB as it expects
    assert h.names(worker) == ["NO_JOB", "NOOP"]
    assert h.grab(worker)[0] == "JOB_ASSIGN"


def test_two_pipelined_grabs_take_two_jobs_in_order_and_a_closed_worker_is_skipped():
    h = deferring()
    client, worker, gone = h.peer(), h.worker(b"f"), h.worker(b"f")
    h.send(gone, T.GRAB_JOB)
    h.send(worker, T.GRAB_JOB)
    h.send(worker, T.GRAB_JOB)
    h.state.disconnect(gone)
    a, b = h.submit(client, data=b"1"), h.submit(client, data=b"2")
    h.state.retry_grabs(NOW)
    assert h.got(worker) == [("JOB_ASSIGN", (a, b"f", b"1")), ("JOB_ASSIGN", (b, b"f", b"2"))]


def test_without_deferral_no_job_is_immediate():
    h = Harness(now=NOW)
    worker = h.worker(b"f")
    assert h.grab(worker) == ("NO_JOB", ())
    assert h.state.workers.grabs == []


def test_a_job_a_waiting_grab_will_take_wakes_no_sleeper():
    h = deferring()
    client, waiting, sleeper = h.peer(), h.worker(b"f"), h.worker(b"f")
    h.send(sleeper, T.PRE_SLEEP)
    h.send(waiting, T.GRAB_JOB)
    handle = h.submit(client)
    h.state.retry_grabs(NOW)
    assert h.got(waiting) == [("JOB_ASSIGN", (handle, b"f", b"x"))]
    assert h.got(sleeper) == []  # not woken for a job it would not get
    assert h.state.workers.unwoken == {}


def test_jobs_beyond_the_waiting_grabs_wake_sleepers_as_usual():
    h = deferring()
    client, waiting, sleeper = h.peer(), h.worker(b"f"), h.worker(b"f")
    h.send(sleeper, T.PRE_SLEEP)
    h.send(waiting, T.GRAB_JOB)
    h.submit(client)
    h.submit(client)  # one grab waits: the second job wakes the sleeper at once
    assert h.names(sleeper) == ["NOOP"]
    h.state.retry_grabs(NOW)
    assert h.names(waiting) == ["JOB_ASSIGN"]
    assert h.grab(sleeper)[0] == "JOB_ASSIGN"


def test_a_job_the_waiting_grab_did_not_take_wakes_a_sleeper_then():
    h = deferring()
    client, waiting, sleeper, gone = h.peer(), h.worker(b"f", b"g"), h.worker(b"f"), h.worker(b"f")
    h.send(sleeper, T.PRE_SLEEP)
    h.send(waiting, T.GRAB_JOB)
    h.send(gone, T.GRAB_JOB)
    f_job = h.submit(client, b"f")
    g_job = h.submit(client, b"g", ptype=T.SUBMIT_JOB_HIGH)
    f_job2 = h.submit(client, b"f")  # two grabs wait that can do f: no wake-up yet
    assert h.got(sleeper) == []
    h.state.disconnect(gone)  # one of them goes away
    h.state.retry_grabs(NOW)
    assert h.got(waiting) == [("JOB_ASSIGN", (g_job, b"g", b"x"))]  # HIGH first: the f jobs are left
    assert h.names(sleeper) == ["NOOP"]  # so the sleeper is woken for them now
    assert h.grab(sleeper)[1][0] == f_job and f_job2 in h.state.jobs


def test_pre_sleep_while_a_job_waits_wakes_the_worker_and_takes_it_off_the_sleepers():
    h = Harness(now=NOW)  # -w 1: one sleeper woken per job
    client, a, b = h.peer(), h.worker(b"f"), h.worker(b"f")
    h.send(a, T.PRE_SLEEP)
    h.send(b, T.PRE_SLEEP)
    h.submit(client)
    assert h.names(a) == ["NOOP"] and b in h.state.functions[b"f"].sleepers
    h.send(b, T.PRE_SLEEP)  # again, with the job still queued: woken at once, and no longer a sleeper
    assert h.names(b) == ["NOOP"] and b not in h.state.functions[b"f"].sleepers
    h.submit(client)  # so the next job wakes nobody twice
    assert h.got(b) == []
