"""The job logic driven without sockets: submit, grab, results, coalescing, priorities, retries, wake-ups."""

from __future__ import annotations

from geartrain.protocol.packets import MAX_UNIQUE_SIZE, T
from geartrain.server.jobs import DONE

from .helpers import Harness


def test_foreground_job_round_trip():
    h = Harness()
    client = h.peer()
    worker = h.worker(b"rev")
    handle = h.submit(client, b"rev", b"hello")
    assert handle == b"H:test:1"
    assert h.grab(worker) == ("JOB_ASSIGN", (handle, b"rev", b"hello"))
    h.send(worker, T.WORK_DATA, handle, b"part")
    h.send(worker, T.WORK_STATUS, handle, b"1", b"2")
    h.send(worker, T.WORK_WARNING, handle, b"warn")
    h.send(worker, T.WORK_COMPLETE, handle, b"olleh")
    assert h.got(client) == [
        ("WORK_DATA", (handle, b"part")),
        ("WORK_STATUS", (handle, b"1", b"2")),
        ("WORK_WARNING", (handle, b"warn")),
        ("WORK_COMPLETE", (handle, b"olleh")),
    ]
    assert h.got(worker) == []
    assert handle not in h.state.jobs
    f = h.state.functions[b"rev"]
    assert (f.total, f.running, f.submitted, f.completed) == (0, 0, 1, 1)


def test_background_job_gets_only_job_created():
    h = Harness()
    client = h.peer()
    worker = h.worker(b"f")
    handle = h.submit(client, ptype=T.SUBMIT_JOB_BG)
    assert h.grab(worker)[0] == "JOB_ASSIGN"
    h.send(worker, T.WORK_COMPLETE, handle, b"done")
    assert h.got(client) == []


def test_grab_variants_and_no_job():
    h = Harness()
    client = h.peer()
    worker = h.worker(b"f")
    assert h.grab(worker) == ("NO_JOB", ())
    a = h.submit(client, unique=b"u1", data=b"d1")
    b = h.submit(client, unique=b"u2", data=b"d2")
    h.send(client, T.SUBMIT_REDUCE_JOB, b"f", b"u3", b"reducer", b"", b"d3")
    c = h.got(client)[0][1][0]
    assert h.grab(worker, T.GRAB_JOB_UNIQ) == ("JOB_ASSIGN_UNIQ", (a, b"f", b"u1", b"d1"))
    # GRAB_JOB_ALL answers JOB_ASSIGN_UNIQ for a job without a reducer, JOB_ASSIGN_ALL with one
    assert h.grab(worker, T.GRAB_JOB_ALL) == ("JOB_ASSIGN_UNIQ", (b, b"f", b"u2", b"d2"))
    assert h.grab(worker, T.GRAB_JOB_ALL) == ("JOB_ASSIGN_ALL", (c, b"f", b"u3", b"reducer", b"d3"))


def test_unique_coalescing_every_client_gets_the_result():
    h = Harness()
    c1, c2, c3 = h.peer(), h.peer(), h.peer()
    worker = h.worker(b"f")
    a = h.submit(c1, unique=b"same", data=b"one")
    b = h.submit(c2, unique=b"same", data=b"two")
    other = h.submit(c3, b"g", unique=b"same")  # another function: another job
    assert a == b != other
    assert h.grab(worker) == ("JOB_ASSIGN", (a, b"f", b"one"))
    h.send(worker, T.WORK_COMPLETE, a, b"r")
    assert h.got(c1) == [("WORK_COMPLETE", (a, b"r"))]
    assert h.got(c2) == [("WORK_COMPLETE", (a, b"r"))]
    assert h.got(c3) == []
    # the unique is free again once the job is done
    assert h.submit(c1, unique=b"same") != a


def test_unique_dash_coalesces_by_data():
    h = Harness()
    c = h.peer()
    a = h.submit(c, unique=b"-", data=b"payload")
    b = h.submit(c, unique=b"-", data=b"payload")
    d = h.submit(c, unique=b"-", data=b"other")
    assert a == b != d


def test_join_while_running_gets_later_packets():
    h = Harness()
    c1, c2 = h.peer(), h.peer()
    worker = h.worker(b"f")
    a = h.submit(c1, unique=b"u")
    h.grab(worker)
    h.send(worker, T.WORK_DATA, a, b"early")
    assert h.submit(c2, unique=b"u") == a
    h.send(worker, T.WORK_COMPLETE, a, b"r")
    assert h.names(c1) == ["WORK_DATA", "WORK_COMPLETE"]
    assert h.names(c2) == ["WORK_COMPLETE"]


def test_foreground_job_dropped_when_its_only_client_leaves():
    h = Harness()
    client = h.peer()
    worker = h.worker(b"f")
    h.submit(client)
    h.state.disconnect(client)
    assert h.grab(worker) == ("NO_JOB", ())
    assert h.state.functions[b"f"].total == 0


def test_merged_background_job_survives_foreground_client_leaving():
    # gearmand drops it (its bug); we must not
    h = Harness()
    fg, bg = h.peer(), h.peer()
    worker = h.worker(b"f")
    a = h.submit(fg, unique=b"u", data=b"d")
    assert h.submit(bg, unique=b"u", ptype=T.SUBMIT_JOB_BG) == a
    h.state.disconnect(fg)
    assert h.grab(worker) == ("JOB_ASSIGN", (a, b"f", b"d"))


def test_priorities_across_functions_then_fifo():
    h = Harness()
    c = h.peer()
    worker = h.worker(b"f", b"g")
    low = h.submit(c, b"f", b"low", ptype=T.SUBMIT_JOB_LOW)
    normal1 = h.submit(c, b"f", b"n1", ptype=T.SUBMIT_JOB_BG)
    high = h.submit(c, b"g", b"high", ptype=T.SUBMIT_JOB_HIGH_BG)
    normal2 = h.submit(c, b"f", b"n2")
    low_bg = h.submit(c, b"g", b"low2", ptype=T.SUBMIT_JOB_LOW_BG)
    order = [h.grab(worker)[1][0] for _ in range(5)]
    # every HIGH before any NORMAL before any LOW; within LOW the round-robin moves on to g after f was served
    assert order == [high, normal1, normal2, low_bg, low]


def test_round_robin_across_a_workers_functions():
    h = Harness()
    c = h.peer()
    worker = h.worker(b"a", b"b", b"c")
    for name in (b"a", b"a", b"a", b"b", b"b", b"c"):
        h.submit(c, name, ptype=T.SUBMIT_JOB_BG)
    got = [h.grab(worker)[1][1] for _ in range(6)]
    assert got == [b"a", b"b", b"c", b"a", b"b", b"a"]


def test_worker_disconnect_requeues_at_head():
    h = Harness()
    c = h.peer()
    w1, w2 = h.worker(b"f"), h.worker(b"f")
    first = h.submit(c, data=b"1")
    second = h.submit(c, data=b"2")
    assert h.grab(w1)[1][0] == first
    h.send(w1, T.WORK_DATA, first, b"partial")
    h.state.disconnect(w1)
    assert h.grab(w2)[1][0] == first  # back at the head, before `second`
    assert h.state.jobs[first].retries == 1
    assert h.grab(w2)[1][0] == second
    h.send(w2, T.WORK_COMPLETE, first, b"ok")
    assert h.got(c) == [("WORK_DATA", (first, b"partial")), ("WORK_COMPLETE", (first, b"ok"))]


def test_job_retries_fail_the_job_after_n_tries():
    h = Harness(job_retries=2)
    c = h.peer()
    handle = h.submit(c)
    for _ in range(2):
        w = h.worker(b"f")
        assert h.grab(w)[1][0] == handle
        h.state.disconnect(w)
    assert h.got(c) == [("WORK_FAIL", (handle,))]
    assert handle not in h.state.jobs
    assert any("max retry" in n and handle.decode() in n for n in h.notices)
    assert h.state.functions[b"f"].failed == 1


def test_unlimited_retries_by_default():
    h = Harness()
    c = h.peer()
    handle = h.submit(c)
    for _ in range(5):
        w = h.worker(b"f")
        h.grab(w)
        h.state.disconnect(w)
    assert h.state.jobs[handle].retries == 5
    assert h.got(c) == []


def test_work_exception_only_to_clients_that_asked():
    h = Harness()
    plain, fancy = h.peer(), h.peer()
    h.send(fancy, T.OPTION_REQ, b"exceptions")
    assert h.got(fancy) == [("OPTION_RES", (b"exceptions",))]
    worker = h.worker(b"f")
    a = h.submit(plain, unique=b"u")
    h.submit(fancy, unique=b"u")
    h.grab(worker)
    h.send(worker, T.WORK_EXCEPTION, a, b"boom")
    assert h.got(plain) == [("WORK_FAIL", (a,))]
    assert h.got(fancy) == [("WORK_EXCEPTION", (a, b"boom"))]


def test_global_exceptions_option():
    h = Harness(exceptions=True)
    c = h.peer()
    worker = h.worker(b"f")
    a = h.submit(c)
    h.grab(worker)
    h.send(worker, T.WORK_EXCEPTION, a, b"boom")
    assert h.got(c) == [("WORK_EXCEPTION", (a, b"boom"))]


def test_unknown_option_and_unexpected_packets():
    h = Harness()
    c = h.peer()
    h.send(c, T.OPTION_REQ, b"nope")
    h.send(c, T.ALL_YOURS)
    assert h.got(c) == [("ERROR", (b"UNKNOWN_OPTION", b"Server does not recognize given option")),
                        ("ERROR", (b"INVALID_COMMAND", b"Command not expected"))]


def test_work_result_for_unknown_or_foreign_job():
    h = Harness()
    c = h.peer()
    w1, w2 = h.worker(b"f"), h.worker(b"f")
    a = h.submit(c)
    h.grab(w1)
    h.send(w2, T.WORK_COMPLETE, a, b"not yours")
    assert h.got(w2) == [("ERROR", (b"JOB_NOT_FOUND", b"Job given in work result not found"))]
    assert h.got(c) == []
    assert h.state.jobs[a].worker is w1


def test_unique_size_limit():
    h = Harness()
    c = h.peer()
    h.submit(c, unique=b"u" * MAX_UNIQUE_SIZE)
    h.send(c, T.SUBMIT_JOB, b"f", b"u" * (MAX_UNIQUE_SIZE + 1), b"x")
    assert h.got(c) == [("ERROR", (b"ARGUMENT_TOO_LARGE", b"Unique value too large"))]


def test_maxqueue():
    h = Harness()
    c = h.peer()
    h.state.function(b"f").maxqueue = [2, 2, 2]
    h.submit(c)
    h.submit(c, ptype=T.SUBMIT_JOB_BG)
    h.send(c, T.SUBMIT_JOB_HIGH, b"f", b"", b"x")
    assert h.got(c) == [("ERROR", (b"QUEUE_ERROR", b"Job queue is full"))]
    # a coalesced submission is not a new job, so it is not refused
    h.state.function(b"g").maxqueue = [1, 1, 1]
    a = h.submit(c, b"g", unique=b"u")
    assert h.submit(c, b"g", unique=b"u") == a


def test_get_status_and_get_status_unique():
    h = Harness()
    c1, c2 = h.peer(), h.peer()
    worker = h.worker(b"f")
    a = h.submit(c1, unique=b"uq")
    h.submit(c2, unique=b"uq")
    h.send(c1, T.GET_STATUS, a)
    assert h.got(c1) == [("STATUS_RES", (a, b"1", b"0", b"0", b"0"))]
    h.grab(worker)
    h.send(worker, T.WORK_STATUS, a, b"3", b"7")
    h.got(c1)
    h.send(c1, T.GET_STATUS, a)
    h.send(c1, T.GET_STATUS_UNIQUE, b"uq")
    assert h.got(c1) == [("STATUS_RES", (a, b"1", b"1", b"3", b"7")),
                         ("STATUS_RES_UNIQUE", (b"uq", b"1", b"1", b"3", b"7", b"2"))]
    h.send(c1, T.GET_STATUS, b"H:test:999")
    h.send(c1, T.GET_STATUS_UNIQUE, b"none")
    assert h.got(c1) == [("STATUS_RES", (b"H:test:999", b"0", b"0", b"0", b"0")),
                         ("STATUS_RES_UNIQUE", (b"none", b"0", b"0", b"0", b"0", b"0"))]


def test_echo_and_client_id():
    h = Harness()
    c = h.peer()
    h.send(c, T.ECHO_REQ, b"a\0b")
    h.send(c, T.SET_CLIENT_ID, b"me")
    assert h.got(c) == [("ECHO_RES", (b"a\0b",))]
    assert c.client_id == b"me"


# ---------------------------------------------------------------------- wake-ups


def _sleep(h: Harness, *names: bytes):
    w = h.worker(*names)
    h.send(w, T.PRE_SLEEP)
    assert h.got(w) == []
    return w


def test_one_sleeper_woken_per_job_round_robin():
    h = Harness()
    c = h.peer()
    sleepers = [_sleep(h, b"f") for _ in range(3)]
    h.submit(c, ptype=T.SUBMIT_JOB_BG)
    woken = [i for i, w in enumerate(sleepers) if h.names(w) == ["NOOP"]]
    assert woken == [0]
    h.submit(c, ptype=T.SUBMIT_JOB_BG)
    woken = [i for i, w in enumerate(sleepers) if h.names(w) == ["NOOP"]]
    assert woken == [1]


def test_worker_wakeup_zero_wakes_all_and_only_once():
    h = Harness(worker_wakeup=0)
    c = h.peer()
    sleepers = [_sleep(h, b"f") for _ in range(3)]
    other = _sleep(h, b"g")
    h.submit(c, ptype=T.SUBMIT_JOB_BG)
    h.submit(c, ptype=T.SUBMIT_JOB_BG)
    assert [h.names(w) for w in sleepers] == [["NOOP"]] * 3  # one NOOP per sleep, not per job
    assert h.got(other) == []  # cannot do f: not woken


def test_worker_wakeup_cap():
    h = Harness(worker_wakeup=2)
    c = h.peer()
    sleepers = [_sleep(h, b"f") for _ in range(4)]
    h.submit(c, ptype=T.SUBMIT_JOB_BG)
    assert sum(h.names(w) == ["NOOP"] for w in sleepers) == 2


def test_pre_sleep_with_pending_job_gets_noop_at_once():
    h = Harness()
    c = h.peer()
    h.submit(c, ptype=T.SUBMIT_JOB_BG)
    w = h.worker(b"f")
    h.send(w, T.PRE_SLEEP)
    assert h.names(w) == ["NOOP"]


def test_woken_worker_that_leaves_passes_the_wakeup_on():
    h = Harness()
    c = h.peer()
    first, second = _sleep(h, b"f"), _sleep(h, b"f")
    h.submit(c, ptype=T.SUBMIT_JOB_BG)
    assert h.names(first) == ["NOOP"]
    assert h.got(second) == []
    h.state.disconnect(first)
    assert h.names(second) == ["NOOP"]


def test_can_do_while_asleep_joins_the_sleepers():
    h = Harness()
    c = h.peer()
    w = _sleep(h, b"f")
    h.send(w, T.CAN_DO, b"g")
    h.submit(c, b"g", ptype=T.SUBMIT_JOB_BG)
    assert h.names(w) == ["NOOP"]


def test_cant_do_and_reset_abilities():
    h = Harness()
    c = h.peer()
    w = h.worker(b"f", b"g")
    h.send(w, T.CANT_DO, b"f")
    h.submit(c, b"f", ptype=T.SUBMIT_JOB_BG)
    assert h.grab(w) == ("NO_JOB", ())
    h.send(w, T.RESET_ABILITIES)
    h.submit(c, b"g", ptype=T.SUBMIT_JOB_BG)
    assert h.grab(w) == ("NO_JOB", ())
    assert h.state.functions[b"f"].workers == 0 and h.state.functions[b"g"].workers == 0


def test_can_do_twice_counts_twice_as_gearmand():
    h = Harness()
    h.worker(b"f", b"f")
    assert h.state.functions[b"f"].workers == 2


# ---------------------------------------------------------------------- timers


def test_can_do_timeout_is_seconds_and_fails_the_job():
    h = Harness()
    c = h.peer()
    w = h.peer()
    h.send(w, T.CAN_DO_TIMEOUT, b"slow", b"10")
    a = h.submit(c, b"slow")
    h.grab(w)
    h.tick(5)  # 5 s: still within 10 seconds (gearmand would read 10 ms)
    assert h.got(c) == []
    h.tick(6)
    assert h.got(c) == [("WORK_FAIL", (a,))]
    assert any("timed out" in n for n in h.notices)
    # the late result is ignored: no ERROR, and the connection still works
    h.send(w, T.WORK_DATA, a, b"late")
    h.send(w, T.WORK_COMPLETE, a, b"late")
    h.send(w, T.ECHO_REQ, b"alive")
    assert h.got(w) == [("ECHO_RES", (b"alive",))]
    assert h.got(c) == []


def test_can_do_timeout_of_1000_and_up_is_milliseconds():
    """Workers written for gearmand >= 1.1.19 send milliseconds (1000 and up): 2500 is 2.5 s."""
    h = Harness()
    c = h.peer()
    w = h.peer()
    h.send(w, T.CAN_DO_TIMEOUT, b"slow", b"2500")
    a = h.submit(c, b"slow")
    h.grab(w)
    h.tick(2.4)
    assert h.got(c) == []
    h.tick(0.2)
    assert h.got(c) == [("WORK_FAIL", (a,))]


def test_can_do_timeout_reading():
    from geartrain.server.workers import can_do_timeout_seconds

    assert [can_do_timeout_seconds(v) for v in (0, -5, 1, 10, 999, 1000, 2500, 60000)] == [
        0.0, 0.0, 1.0, 10.0, 999.0, 1.0, 2.5, 60.0]


def test_can_do_timeout_with_retries_requeues():
    h = Harness(job_retries=3)
    c = h.peer()
    slow, fast = h.peer(), h.worker(b"f")
    h.send(slow, T.CAN_DO_TIMEOUT, b"f", b"2")
    a = h.submit(c)
    h.grab(slow)
    h.tick(3)
    assert h.got(c) == []
    assert h.grab(fast)[1][0] == a
    h.send(fast, T.WORK_COMPLETE, a, b"ok")
    h.send(slow, T.WORK_COMPLETE, a, b"late")
    assert h.got(c) == [("WORK_COMPLETE", (a, b"ok"))]
    assert h.got(slow) == []


def test_finished_in_time_is_not_timed_out():
    h = Harness()
    c = h.peer()
    w = h.peer()
    h.send(w, T.CAN_DO_TIMEOUT, b"f", b"2")
    a = h.submit(c)
    h.grab(w)
    h.send(w, T.WORK_COMPLETE, a, b"ok")
    h.tick(10)
    assert h.got(c) == [("WORK_COMPLETE", (a, b"ok"))]


def test_epoch_job_runs_at_its_time_and_wakes_a_sleeper():
    h = Harness()
    c = h.peer()
    w = _sleep(h, b"f")
    when = int(h.state.now) + 100
    h.send(c, T.SUBMIT_JOB_EPOCH, b"f", b"", str(when).encode(), b"later")
    handle = h.got(c)[0][1][0]
    assert h.got(w) == []
    assert h.state.functions[b"f"].total == 1
    assert h.state.next_wakeup() == when
    h.tick(99)
    assert h.got(w) == []
    h.tick(1)
    assert h.names(w) == ["NOOP"]
    assert h.grab(w) == ("JOB_ASSIGN", (handle, b"f", b"later"))


def test_epoch_in_the_past_runs_now():
    h = Harness()
    c = h.peer()
    w = h.worker(b"f")
    h.send(c, T.SUBMIT_JOB_EPOCH, b"f", b"", b"12", b"d")
    assert h.grab(w)[0] == "JOB_ASSIGN"


def test_sched_job_fires_every_time_its_spec_matches():
    h = Harness()
    h.state.now = 1_700_000_000.0
    c = h.peer()
    w = h.worker(b"cron")
    h.send(c, T.SUBMIT_JOB_SCHED, b"cron", b"", b"", b"", b"", b"", b"", b"tick")  # every minute
    sched_handle = h.got(c)[0][1][0]
    assert h.grab(w) == ("NO_JOB", ())
    first = h.state.next_wakeup()
    assert first is not None and first % 60 == 0 and 0 < first - h.state.now <= 60
    h.state.tick(first)
    name, args = h.grab(w)
    assert name == "JOB_ASSIGN" and args[1:] == (b"cron", b"tick") and args[0] != sched_handle
    h.send(w, T.WORK_COMPLETE, args[0], b"")
    h.state.tick(first + 60)
    assert h.grab(w)[0] == "JOB_ASSIGN"
    assert h.state.cancel(sched_handle)
    h.state.tick(first + 600)
    assert h.grab(w) == ("NO_JOB", ())


def test_sched_bad_spec_is_an_error():
    h = Harness()
    c = h.peer()
    h.send(c, T.SUBMIT_JOB_SCHED, b"f", b"", b"61", b"", b"", b"", b"", b"x")
    assert h.names(c) == ["ERROR"]


# ---------------------------------------------------------------------- admin operations


def test_cancel_queued_job_fails_it_lazily():
    h = Harness()
    c = h.peer()
    w = h.worker(b"f")
    a = h.submit(c, data=b"1")
    b = h.submit(c, data=b"2")
    assert h.state.cancel(a)
    assert h.got(c) == [("WORK_FAIL", (a,))]
    assert not h.state.cancel(a)
    assert h.state.functions[b"f"].total == 1
    assert h.grab(w)[1][0] == b  # the cancelled job is skipped
    assert not h.state.cancel(b)  # running: not cancellable
    assert h.grab(w) == ("NO_JOB", ())


def test_drop_function():
    h = Harness()
    c = h.peer()
    w = h.worker(b"busy")
    assert h.state.drop_function(b"busy") == "busy"
    assert h.state.drop_function(b"nope") == "missing"
    a = h.submit(c, b"idle")
    assert h.state.drop_function(b"idle") == "ok"
    assert h.got(c) == [("WORK_FAIL", (a,))]
    assert b"idle" not in h.state.functions
    h.state.disconnect(w)
    assert h.state.drop_function(b"busy") == "ok"


def test_draining_hands_out_no_jobs():
    h = Harness()
    c = h.peer()
    w = h.worker(b"f")
    h.submit(c)
    h.state.draining = True
    assert h.grab(w) == ("NO_JOB", ())


def test_counters():
    h = Harness()
    c = h.peer()
    w = h.worker(b"f")
    for result in (T.WORK_COMPLETE, T.WORK_FAIL, T.WORK_EXCEPTION):
        a = h.submit(c)
        h.grab(w)
        if result == T.WORK_FAIL:
            h.send(w, result, a)
        else:
            h.send(w, result, a, b"")
    a = h.submit(c)
    h.grab(w)
    h.state.disconnect(w)
    f = h.state.functions[b"f"]
    assert (f.submitted, f.completed, f.failed, f.exceptions, f.retried) == (4, 1, 1, 1, 1)
    assert (h.state.submitted, h.state.completed, h.state.failed, h.state.exceptions) == (4, 1, 1, 1)
    assert h.state.jobs[a].state != DONE


def test_acl_hook_refuses():
    h = Harness()
    c = h.peer()
    h.state.acl = lambda peer, action, name: name != b"secret"
    h.send(c, T.SUBMIT_JOB, b"secret", b"", b"x")
    h.send(c, T.CAN_DO, b"secret")
    assert h.names(c) == ["ERROR", "ERROR"]
    assert h.state.functions.get(b"secret") is None or h.state.functions[b"secret"].workers == 0
    h.submit(c, b"open")


def test_unique_dash_with_empty_data_does_not_coalesce():
    h = Harness()
    c = h.peer()
    assert h.submit(c, unique=b"-", data=b"") != h.submit(c, unique=b"-", data=b"")


def test_status_of_too_long_handle_or_unique():
    h = Harness()
    c = h.peer()
    h.send(c, T.GET_STATUS, b"H" * 65)
    h.send(c, T.GET_STATUS_UNIQUE, b"u" * 65)
    assert h.got(c) == [("ERROR", (b"ARGUMENT_TOO_LARGE", b"Job handle too large")),
                        ("ERROR", (b"ARGUMENT_TOO_LARGE", b"Unique value too large"))]


def test_job_not_found_texts_per_packet_type_as_gearmand():
    h = Harness()
    w = h.worker(b"f")
    h.send(w, T.WORK_DATA, b"H:x:1", b"d")
    h.send(w, T.WORK_WARNING, b"H:x:1", b"d")
    h.send(w, T.WORK_STATUS, b"H:x:1", b"1", b"2")
    h.send(w, T.WORK_FAIL, b"H:x:1")
    h.send(w, T.WORK_EXCEPTION, b"H:x:1", b"d")
    assert [args[1] for _, args in h.got(w)] == [
        b"Job does not exist on server", b"Job does not exist on server", b"Job given in work result not found",
        b"Job given in work result not found", b"An exception was received for a job that does not exist"]


def test_woken_worker_that_takes_other_work_passes_the_wakeup_on():
    h = Harness()
    c = h.peer()
    w1 = _sleep(h, b"f", b"g")
    w2 = _sleep(h, b"f")
    h.submit(c, b"f", ptype=T.SUBMIT_JOB_BG)  # wakes w1, asleep longest
    assert h.names(w1) == ["NOOP"]
    assert h.got(w2) == []
    h.submit(c, b"g", ptype=T.SUBMIT_JOB_HIGH_BG)  # no sleeper for g (w1 is awake already)
    assert h.grab(w1)[1][1] == b"g"  # w1 takes the HIGH g job, not the f job it was woken for
    assert h.names(w2) == ["NOOP"]  # so f's wake-up goes to w2


def test_worker_with_many_functions_priorities_and_every_function_served():
    h = Harness()
    c = h.peer()
    names = [b"fn%d" % i for i in range(40)]
    w = h.worker(*names)
    other = h.worker(b"unrelated")
    h.submit(c, b"unrelated", ptype=T.SUBMIT_JOB_HIGH_BG)
    for name in names[::-1]:
        h.submit(c, name, data=b"low", ptype=T.SUBMIT_JOB_LOW_BG)
    for name in names[:5]:
        h.submit(c, name, data=b"normal", ptype=T.SUBMIT_JOB_BG)
    h.submit(c, names[30], data=b"high", ptype=T.SUBMIT_JOB_HIGH_BG)
    got = [h.grab(w)[1] for _ in range(46)]
    assert [data for _, _, data in got] == [b"high"] + [b"normal"] * 5 + [b"low"] * 40
    assert sorted(name for _, name, data in got if data == b"low") == sorted(names)
    assert h.grab(w) == ("NO_JOB", ())
    assert h.grab(other)[1][1] == b"unrelated"
    # PRE_SLEEP of such a worker still sees a waiting job
    h.submit(c, names[7], ptype=T.SUBMIT_JOB_BG)
    h.send(w, T.PRE_SLEEP)
    assert h.names(w) == ["NOOP"]


def test_sleeping_worker_with_many_functions_is_woken_for_any_of_them():
    h = Harness()
    c = h.peer()
    names = [b"fn%d" % i for i in range(40)]
    wide = _sleep(h, *names)
    assert all(not h.state.functions[n].sleepers for n in names)  # one entry, not forty
    h.submit(c, b"other", ptype=T.SUBMIT_JOB_BG)
    assert h.got(wide) == []
    h.submit(c, names[33], ptype=T.SUBMIT_JOB_BG)
    assert h.names(wide) == ["NOOP"]
    h.submit(c, names[34], ptype=T.SUBMIT_JOB_BG)
    assert h.got(wide) == []  # one NOOP per sleep
    assert h.grab(wide)[1][1] == names[33]
    h.state.disconnect(wide)
    assert not h.state.workers.wide_sleepers


def test_timeout_and_epoch_heaps_stay_bounded():
    h = Harness()
    c = h.peer()
    w = h.peer()
    h.send(w, T.CAN_DO_TIMEOUT, b"f", b"3600")
    for _ in range(5000):  # quick jobs under a one-hour timeout
        a = h.submit(c, ptype=T.SUBMIT_JOB_BG)
        h.grab(w)
        h.send(w, T.WORK_COMPLETE, a, b"")
    assert len(h.state.life.timeout_heap) <= 2048
    when = str(int(h.state.now) + 3600).encode()
    for _ in range(5000):  # far-future epoch jobs, cancelled
        h.send(c, T.SUBMIT_JOB_EPOCH, b"e", b"", when, b"")
        assert h.state.cancel(h.got(c)[0][1][0])
    assert len(h.state.life.epoch_heap) <= 2048
    # live entries survive the clean-up
    a = h.submit(c, ptype=T.SUBMIT_JOB_BG)
    h.grab(w)
    h.tick(3601)
    assert a in w.as_worker.stale


def test_get_status_unique_answers_for_the_newest_job_with_that_unique():
    h = Harness()
    c, c2 = h.peer(), h.peer()
    h.submit(c, b"g", unique=b"shared", ptype=T.SUBMIT_JOB_BG)
    h.submit(c2, b"f", unique=b"shared")  # newer, in a function created later
    h.submit(c2, b"zz", unique=b"other")
    h.submit(c, b"g", unique=b"other", ptype=T.SUBMIT_JOB_BG)  # newer, in a function created earlier
    h.send(c, T.GET_STATUS_UNIQUE, b"shared")
    h.send(c, T.GET_STATUS_UNIQUE, b"other")
    assert [args[-1] for _, args in h.got(c)] == [b"1", b"0"]  # client counts: the f job, then the g job


def test_histogram_slots_at_every_bound():
    """The inline bucket choice (a compare for the first bound, bisect beyond) puts a wait or run of
    exactly a bound in that bound's slot (Prometheus `le`), just above it in the next, past the last
    bound in the overflow slot; completions, failures and exceptions all count their run."""
    from geartrain.server.jobs import TIME_BUCKETS

    values = [0.0]
    for bound in TIME_BUCKETS:
        values += [bound, bound * 1.001]
    h = Harness()
    c = h.peer()
    w = h.worker(b"f")
    t0 = 0.0  # so that the differences are exactly the values
    ends = [T.WORK_COMPLETE, T.WORK_FAIL, T.WORK_EXCEPTION]
    for i, value in enumerate(values):
        h.state.now = t0
        h.submit(c, b"f", unique=b"u%d" % i)
        h.state.now = t0 + value
        handle = h.grab(w)[1][0]
        h.state.now = t0 + 2 * value
        end = ends[i % 3]
        h.send(w, end, handle, *([b""] if end != T.WORK_FAIL else []))
        h.got(c)
    expected = [0] * (len(TIME_BUCKETS) + 1)
    for value in values:
        slot = next((k for k, bound in enumerate(TIME_BUCKETS) if value <= bound), len(TIME_BUCKETS))
        expected[slot] += 1
    f = h.state.functions[b"f"]
    assert f.wait_hist == expected
    assert f.run_hist == expected
    assert abs(f.wait_sum - sum(values)) < 1e-6 and abs(f.run_sum - sum(values)) < 1e-6


def test_big_payloads_are_queued_as_parts_of_their_own_and_arrive_whole():
    from geartrain.server.lifecycle import BIG_PART

    h = Harness()
    c, w = h.peer(), h.worker(b"f")
    data, result = bytes(range(256)) * (BIG_PART // 256 + 1), b"\x01\x00r" * BIG_PART
    handle = h.submit(c, b"f", data, b"u1")
    h.send(w, T.GRAB_JOB_UNIQ)
    assert w.big and w.out[-1] is data  # the payload itself, not a copy in a joined packet
    assert h.got(w) == [("JOB_ASSIGN_UNIQ", (handle, b"f", b"u1", data))]
    h.send(w, T.WORK_COMPLETE, handle, result)
    assert c.big and c.out[-1] is result
    assert h.got(c) == [("WORK_COMPLETE", (handle, result))]


def test_a_wakeup_not_answered_in_time_passes_to_the_next_sleeper():
    h = Harness(wake_timeout=0.1)
    c = h.peer()
    deaf, alive, third = _sleep(h, b"f"), _sleep(h, b"f"), _sleep(h, b"f")
    h.submit(c, ptype=T.SUBMIT_JOB_BG)
    assert h.names(deaf) == ["NOOP"] and h.got(alive) == []  # the longest asleep is woken first
    h.state.tick(h.state.now + 0.05)
    assert h.got(alive) == []  # not yet
    h.state.tick(h.state.now + 0.06)
    assert h.names(alive) == ["NOOP"]
    assert h.got(deaf) == [] and h.got(third) == []
    assert h.grab(alive)[0] == "JOB_ASSIGN"
    h.state.tick(h.state.now + 1.0)
    assert h.got(third) == []  # answered: nothing more to pass on
    assert any("did not ask for a job within 0.1s" in n for n in h.notices)


def test_a_wakeup_answered_in_time_is_not_passed_on():
    h = Harness(wake_timeout=0.1)
    c = h.peer()
    first, second = _sleep(h, b"f"), _sleep(h, b"f")
    h.submit(c, ptype=T.SUBMIT_JOB_BG)
    h.submit(c, ptype=T.SUBMIT_JOB_BG)
    assert h.names(first) == ["NOOP"] and h.names(second) == ["NOOP"]
    name, (handle, _, _) = h.grab(first)
    assert name == "JOB_ASSIGN"
    h.send(first, T.WORK_COMPLETE, handle, b"")
    h.send(first, T.PRE_SLEEP)
    assert h.names(first) == ["NOOP"]  # the second job is still queued: woken again at once
    h.state.tick(h.state.now + 0.2)  # the first wake-up's deadline is gone by, the second's too
    assert h.got(second) == []  # second never grabbed, but nobody else sleeps: nothing to pass to
    assert h.grab(first)[0] == "JOB_ASSIGN"
    h.state.tick(h.state.now + 1.0)
    assert h.got(second) == [] and h.got(first) == []


def test_a_wakeup_is_passed_on_only_while_its_function_has_jobs():
    h = Harness(wake_timeout=0.1)
    c, other = h.peer(), h.worker(b"f")
    deaf, alive = _sleep(h, b"f"), _sleep(h, b"f")
    h.submit(c, ptype=T.SUBMIT_JOB_BG)
    assert h.names(deaf) == ["NOOP"]
    assert h.grab(other)[0] == "JOB_ASSIGN"  # a worker that was awake took it
    h.state.tick(h.state.now + 0.2)
    assert h.got(alive) == []  # no job left to wake anyone for
    assert not h.notices


def test_without_a_wake_timeout_nothing_is_passed_on():
    h = Harness()
    c = h.peer()
    deaf, alive = _sleep(h, b"f"), _sleep(h, b"f")
    h.submit(c, ptype=T.SUBMIT_JOB_BG)
    assert h.names(deaf) == ["NOOP"]
    h.state.tick(h.state.now + 10)
    assert h.got(alive) == []
    assert h.state.next_wakeup() is None
