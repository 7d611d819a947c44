"""What outlives a job, driven without sockets: retries with backoff, the failed-job registry, kept results,
and the admin commands that show and change them."""

from __future__ import annotations

import base64

from geartrain.protocol.packets import T
from geartrain.server.commands import Admin
from geartrain.server.jobs import DELAYED, QUEUED
from geartrain.server.policy import parse
from geartrain.server.store.base import Extras, FailedJob, KeptResult, Try

from .helpers import Harness, check_transitions


def policy(h: Harness, name: bytes, words: str) -> None:
    h.state.life.set_policy(h.state.function(name), parse(words))


def run_and(h: Harness, worker, ptype: int, *args: bytes) -> bytes:
    """The worker grabs a job and answers it with PTYPE; the job's handle."""
    kind, (handle, *_) = h.grab(worker)
    assert kind == "JOB_ASSIGN", kind
    h.send(worker, ptype, handle, *args)
    return handle


def admin(h: Harness, line: bytes) -> bytes:
    a = Admin(h.state, version="test", verbose=lambda: "INFO")
    p = h.peer()
    a.run(p, line)
    return h.raw(p)


def test_a_failed_background_job_waits_its_delay_then_runs_again_until_its_tries_are_spent():
    h = Harness()
    check_transitions(h.state)
    policy(h, b"f", "tries=3 delay=2 backoff=exponential factor=3 cap=100")
    c, w = h.peer(), h.worker(b"f")
    handle = h.submit(c, ptype=T.SUBMIT_JOB_BG, data=b"payload")
    start = h.state.now
    run_and(h, w, T.WORK_FAIL)
    job = h.state.jobs[handle]
    assert job.state == DELAYED and h.state.next_wakeup() == start + 2
    assert h.grab(w)[0] == "NO_JOB"  # not before its delay
    h.tick(2)
    run_and(h, w, T.WORK_EXCEPTION, b"boom")
    assert job.state == DELAYED and h.state.next_wakeup() == h.state.now + 6  # 2 * 3
    h.tick(6)
    run_and(h, w, T.WORK_FAIL)  # the third try: spent
    assert handle not in h.state.jobs
    registry = h.state.life.failed_jobs
    (failed,) = registry.jobs.values()
    assert (failed.function, failed.data, failed.size, failed.background) == (b"f", b"payload", 7, True)
    assert [(t.how, t.text) for t in Try.decode_all(failed.history)] == [
        ("failed", b""), ("exception", b"boom"), ("failed", b"")]
    assert h.state.function(b"f").buried == 1 and h.state.function(b"f").retried == 2


def test_a_worker_that_dies_or_times_out_costs_a_try_under_a_policy_and_minus_j_is_not_used():
    h = Harness(job_retries=1)  # -j 1 would fail the job at the first death
    policy(h, b"f", "tries=3 delay=1")
    c = h.peer()
    handle = h.submit(c, ptype=T.SUBMIT_JOB_BG)
    w = h.worker(b"f")
    h.grab(w)
    h.state.disconnect(w)
    job = h.state.jobs[handle]
    assert job.state == DELAYED
    h.tick(1)
    w2 = h.peer()
    h.send(w2, T.CAN_DO_TIMEOUT, b"f", b"2")
    h.grab(w2)
    h.tick(3)  # timed out: a try
    assert job.state == DELAYED and [t.how for t in job.history] == ["worker lost", "timed out"]
    h.tick(1)
    w3 = h.worker(b"f")
    run_and(h, w3, T.WORK_COMPLETE, b"done at last")
    assert handle not in h.state.jobs and not h.state.life.failed_jobs.jobs


def test_without_a_policy_minus_j_keeps_gearmands_meaning():
    h = Harness(job_retries=2)
    c = h.peer()
    h.submit(c, ptype=T.SUBMIT_JOB_BG)
    for _ in range(2):
        w = h.worker(b"f")
        h.grab(w)
        h.state.disconnect(w)
    assert not h.state.jobs and not h.state.life.failed_jobs.jobs  # failed after 2 tries, no registry


def test_foreground_jobs_are_not_retried_unless_the_policy_says_so():
    h = Harness()
    policy(h, b"f", "tries=3 delay=1")
    c, w = h.peer(), h.worker(b"f")
    handle = h.submit(c)
    run_and(h, w, T.WORK_FAIL)
    assert h.got(c) == [("WORK_FAIL", (handle,))]  # at once, as without a policy
    assert not h.state.life.failed_jobs.jobs
    policy(h, b"f", "tries=3 delay=1 foreground=yes")
    handle = h.submit(c)
    run_and(h, w, T.WORK_FAIL)
    assert h.got(c) == []  # the client waits through the tries
    h.tick(1)
    run_and(h, w, T.WORK_COMPLETE, b"ok")
    assert h.got(c) == [("WORK_COMPLETE", (handle, b"ok"))]


def test_a_foreground_client_that_leaves_while_its_job_waits_drops_it():
    h = Harness()
    policy(h, b"f", "tries=3 delay=5 foreground=yes")
    c, w = h.peer(), h.worker(b"f")
    handle = h.submit(c)
    run_and(h, w, T.WORK_FAIL)
    h.state.disconnect(c)
    assert handle not in h.state.jobs and h.state.dropped == 1


def test_a_requeued_failed_job_runs_again_and_a_cut_payload_is_refused():
    h = Harness()
    policy(h, b"f", "tries=2 delay=0")
    h.state.life.failed_jobs.max_payload = 4
    c, w = h.peer(), h.worker(b"f")
    for data in (b"abc", b"too long"):
        h.submit(c, ptype=T.SUBMIT_JOB_BG, data=data, unique=data[:3])
        run_and(h, w, T.WORK_FAIL)
        h.tick(0)
        run_and(h, w, T.WORK_FAIL)
    short, cut = h.state.life.failed_jobs.jobs.values()
    assert (cut.data, cut.size) == (b"too ", 8)
    assert admin(h, b"failed requeue all") == b"OK 1\n"  # the cut one stays
    assert list(h.state.life.failed_jobs.jobs) == [cut.id]
    kind, (handle, name, data) = h.grab(w)
    assert (kind, name, data) == ("JOB_ASSIGN", b"f", b"abc")
    assert admin(h, b"failed requeue %d" % cut.id).startswith(b"ERR INVALID_ARGUMENT 1+job(s)+kept+only+part")
    assert admin(h, b"failed discard f") == b"OK 1\n" and not h.state.life.failed_jobs.jobs


def test_the_registry_is_bounded_oldest_first():
    h = Harness()
    policy(h, b"f", "tries=2 delay=0")
    h.state.life.failed_jobs.max_count = 2
    c, w = h.peer(), h.worker(b"f")
    for i in range(3):
        h.submit(c, ptype=T.SUBMIT_JOB_BG, data=b"%d" % i)
        run_and(h, w, T.WORK_FAIL)
        h.tick(0)
        run_and(h, w, T.WORK_FAIL)
    registry = h.state.life.failed_jobs
    assert [j.data for j in registry.jobs.values()] == [b"1", b"2"] and registry.dropped == 1


def test_kept_results_by_handle_and_unique_until_they_expire():
    h = Harness()
    policy(h, b"f", "keep=60")
    c, w = h.peer(), h.worker(b"f")
    done = h.submit(c, ptype=T.SUBMIT_JOB_BG, unique=b"u1")
    run_and(h, w, T.WORK_COMPLETE, b"the result")
    raised = h.submit(c, ptype=T.SUBMIT_JOB_BG)
    run_and(h, w, T.WORK_EXCEPTION, b"it broke")
    fg = h.submit(c)
    run_and(h, w, T.WORK_COMPLETE, b"told to its client")
    outcome = h.state.outcome
    assert outcome(done)[0] == "complete" and outcome(done)[2].data == b"the result"
    assert outcome(b"u1")[2].handle == done
    assert outcome(raised)[0] == "exception" and outcome(raised)[2].data == b"it broke"
    assert outcome(fg)[0] == "unknown"  # foreground outcomes go to their clients, not kept
    h.tick(61)
    assert outcome(done)[0] == "unknown" and len(h.state.life.kept) == 0


def test_kept_results_are_bounded_in_count_and_bytes():
    h = Harness()
    policy(h, b"f", "keep=600")
    kept = h.state.life.kept
    kept.max_count, kept.max_bytes = 3, 10
    c, w = h.peer(), h.worker(b"f")
    handles = []
    for data in (b"aaaa", b"bbbb", b"cccc"):
        handles.append(h.submit(c, ptype=T.SUBMIT_JOB_BG))
        run_and(h, w, T.WORK_COMPLETE, data)
    assert [r.data for r in kept.by_handle.values()] == [b"bbbb", b"cccc"] and kept.evicted == 1  # 12 bytes > 10


def test_result_command_for_a_queued_a_waiting_and_an_ended_job():
    h = Harness()
    policy(h, b"f", "tries=2 delay=5 keep=60")
    c, w = h.peer(), h.worker(b"f")
    handle = h.submit(c, ptype=T.SUBMIT_JOB_BG, unique=b"u")
    assert admin(h, b"result " + handle) == (b"state\tqueued\nhandle\t" + handle + b"\nfunction\tf\nunique\tu\n"
                                             b"tries\t1\n.\n")
    run_and(h, w, T.WORK_EXCEPTION, b"first\ttry\nfailed")
    lines = admin(h, b"result u").split(b"\n")
    assert lines[0] == b"state\twaiting" and b"tries\t2" in lines and b"error\texception: first try failed" in lines
    h.tick(5)
    run_and(h, w, T.WORK_COMPLETE, b"\x00binary\xff")
    lines = admin(h, b"result " + handle).split(b"\n")
    assert lines[0] == b"state\tcomplete"
    assert b"data\t" + base64.b64encode(b"\x00binary\xff") in lines
    assert admin(h, b"result nobody") == b"state\tunknown\n.\n"
    assert admin(h, b"result").startswith(b"ERR INVALID_ARGUMENTS")


def test_policy_commands():
    h = Harness()
    assert admin(h, b"policy f") == b"OK none\n"
    assert admin(h, b"policy f tries=3 delay=2") == b"OK\r\n"
    assert admin(h, b"policy f") == b"OK tries=3 delay=2\n"
    assert admin(h, b"policy g tries=zero").startswith(b"ERR INVALID_ARGUMENT bad+value+for+tries")
    h.state.life.set_default_policy(parse("keep=30"))
    assert admin(h, b"policies") == b"*\tkeep=30\nf\ttries=3 delay=2\n.\n"
    assert admin(h, b"policy f none") == b"OK\r\n" and admin(h, b"policy f") == b"OK keep=30\n"


def test_failed_list_and_show():
    h = Harness()
    policy(h, b"f", "tries=2 delay=0")
    c, w = h.peer(), h.worker(b"f")
    h.submit(c, ptype=T.SUBMIT_JOB_BG, data=b"x", unique=b"u")
    run_and(h, w, T.WORK_EXCEPTION, b"one")
    h.tick(0)
    run_and(h, w, T.WORK_EXCEPTION, b"two")
    row = admin(h, b"failed").split(b"\n")[0].split(b"\t")
    assert row[:4] == [b"1", b"f", b"u", b"2"] and row[5:] == [b"1", b"exception: two"]
    assert admin(h, b"failed list g") == b".\n"
    shown = admin(h, b"failed show 1").split(b"\n")
    assert b"data\t" + base64.b64encode(b"x") in shown
    assert [ln.split(b" ", 1)[0] for ln in shown if ln.startswith(b"try\t")] == [b"try\t1", b"try\t2"]
    assert admin(h, b"failed show 9") == b"ERR UNKNOWN_JOB\r\n"


class Recorder:
    """Stands in for group.GroupCommit: records what the state files with it."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, *args))


def test_with_a_durable_store_every_change_is_filed():
    h = Harness()
    rec = Recorder()
    policy(h, b"f", "tries=2 delay=3 keep=60")
    c, w = h.peer(), h.worker(b"f")
    handle = h.submit(c, ptype=T.SUBMIT_JOB_BG)
    job = h.state.jobs[handle]
    job.store_key = b""  # as if committed
    h.state.committer = rec
    run_and(h, w, T.WORK_FAIL)
    (name, retry), = rec.calls
    assert name == "retry" and retry.key == (b"", b"f") and retry.tries == 1 and retry.when == h.state.now + 3
    rec.calls.clear()
    h.tick(3)
    run_and(h, w, T.WORK_FAIL)
    assert sorted(call[0] for call in rec.calls) == ["bury", "done", "keep"]  # one turn: one settlement
    assert [call[1] for call in rec.calls if call[0] == "done"] == [(b"", b"f")]
    rec.calls.clear()
    h.state.life.set_policy(h.state.function(b"f"), None)
    assert rec.calls == [("policy", b"f", "")]


def test_what_the_store_kept_comes_back_and_handles_count_on_past_it():
    h = Harness(handle_prefix=b"H:test")
    failed = FailedJob(7, b"H:test:40", b"f", b"u", b"data", 4, 1, True, 1.0, Try.encode_all([]))
    kept = KeptResult(b"H:test:55", b"f", b"k", "complete", b"r", h.state.now, h.state.now + 60)
    h.state.restore_extras(Extras([kept], [failed], {b"f": "tries=4"}))
    assert h.state.function(b"f").retry.tries == 4
    assert h.state.outcome(b"k")[0] == "complete"
    assert list(h.state.life.failed_jobs.jobs) == [7] and h.state.life.failed_jobs.next_id == 8
    assert h.submit(h.peer()) == b"H:test:56"


def test_a_policy_given_at_start_wins_over_the_stored_one():
    h = Harness()
    h.state.life.set_policy(h.state.function(b"f"), parse("tries=9"), store=False)
    h.state.restore_extras(Extras([], [], {b"f": "tries=2", b"g": "keep=5"}))
    assert h.state.function(b"f").retry.tries == 9 and h.state.function(b"g").keep == 5


def test_a_retry_keeps_the_delayed_count_and_a_cancel_of_a_waiting_job_ends_it():
    h = Harness()
    policy(h, b"f", "tries=3 delay=10")
    c, w = h.peer(), h.worker(b"f")
    handle = h.submit(c, ptype=T.SUBMIT_JOB_BG)
    run_and(h, w, T.WORK_FAIL)
    f = h.state.function(b"f")
    assert f.delayed[1] == 1 and f.total == 1 and h.state.jobs[handle].state == DELAYED
    assert h.state.cancel(handle)
    assert f.total == 0 and not h.state.life.failed_jobs.jobs  # cancelled, not failed
    h.tick(20)
    assert h.state.jobs == {} and all(j.state != QUEUED for j in f.queues[1])
