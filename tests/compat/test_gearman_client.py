"""GearmanClient (geartrain.compat.gearman) against our server and the C gearmand: request states,
timeouts, exceptions, priorities, failures and what the client keeps in memory."""

from __future__ import annotations

import gc
import threading

import pytest

import geartrain.compat.gearman as gearman
from tests.conftest import free_port

from ._support import CountingProxy, worker_thread


def echo(worker, job):
    return job.data


def test_request_states_from_unknown_to_complete(any_server):
    client = gearman.GearmanClient([any_server.address])
    request = client._create_request_from_dictionary(dict(task="echo", data="hi"))
    assert request.state == gearman.JOB_UNKNOWN and not request.complete
    client.send_job_request(request)
    assert request.state == gearman.JOB_PENDING
    client.wait_until_jobs_accepted([request], poll_timeout=10)
    assert request.state == gearman.JOB_CREATED and not request.complete and not request.timed_out
    assert isinstance(request.job.handle, str) and request.job.handle
    with worker_thread([any_server], {"echo": echo}):
        client.wait_until_jobs_completed([request], poll_timeout=10)
    assert request.state == gearman.JOB_COMPLETE and request.complete and not request.timed_out
    assert request.result == "hi"


def test_poll_timeout_marks_request_timed_out(any_server):
    client = gearman.GearmanClient([any_server.address])
    request = client.submit_job("nobody_works_this", "x", poll_timeout=0.3)
    assert request.timed_out
    assert request.state == gearman.JOB_CREATED and not request.complete


def test_work_exception_reaches_request_exception(any_server):
    def explode(worker, job):
        worker.send_job_exception(job, "it went wrong: " + job.data)

    with worker_thread([any_server], {"explode": explode}):
        request = gearman.GearmanClient([any_server.address]).submit_job("explode", "abc", poll_timeout=10)

        class NoExceptionsClient(gearman.GearmanClient):
            forward_exceptions = False

        plain = NoExceptionsClient([any_server.address]).submit_job("explode", "abc", poll_timeout=10)
    assert request.state == gearman.JOB_FAILED and request.complete
    assert request.exception == "it went wrong: abc"
    # Without OPTION_REQ exceptions the server turns WORK_EXCEPTION into WORK_FAIL.
    assert plain.state == gearman.JOB_FAILED and plain.exception is None


def test_callback_raising_fails_the_job(any_server):
    def broken(worker, job):
        raise RuntimeError("bug in the worker")

    with worker_thread([any_server], {"broken": broken}):
        request = gearman.GearmanClient([any_server.address]).submit_job("broken", "x", poll_timeout=10)
    assert request.state == gearman.JOB_FAILED and request.result is None and request.exception is None


def test_data_warning_and_status_updates(any_server):
    def chatty(worker, job):
        worker.send_job_warning(job, "careful")
        worker.send_job_data(job, "part 1")
        worker.send_job_status(job, 1, 2)
        worker.send_job_data(job, "part 2")
        worker.send_job_status(job, 2, 2)
        return "done"

    with worker_thread([any_server], {"chatty": chatty}):
        request = gearman.GearmanClient([any_server.address]).submit_job("chatty", "", poll_timeout=10)
    assert request.result == "done"
    assert list(request.data_updates) == ["part 1", "part 2"]
    assert list(request.warning_updates) == ["careful"]
    assert request.status["numerator"] == 2 and request.status["denominator"] == 2
    assert request.status["known"] and request.status["running"]


def test_priorities_order_the_queue(any_server):
    client = gearman.GearmanClient([any_server.address])
    for name, priority in (("low", gearman.PRIORITY_LOW), ("none", gearman.PRIORITY_NONE),
                           ("high", gearman.PRIORITY_HIGH)):
        request = client.submit_job("ordered", name, priority=priority, background=True, poll_timeout=10)
        assert request.complete and request.state == gearman.JOB_CREATED
    seen = []
    done = threading.Event()

    def record(worker, job):
        seen.append(job.data)
        if len(seen) == 3:
            done.set()
        return ""

    with worker_thread([any_server], {"ordered": record}):
        assert done.wait(10)
    assert seen == ["high", "none", "low"]


def test_get_job_status_of_queued_running_and_finished_jobs(any_server):
    client = gearman.GearmanClient([any_server.address])
    queued = client.submit_job("status_task", "q", background=True, poll_timeout=10)
    status = client.get_job_status(queued, poll_timeout=10).status
    assert (status["known"], status["running"]) == (True, False)
    assert status["handle"] == queued.job.handle
    release = threading.Event()
    started = threading.Event()

    def slow(worker, job):
        worker.send_job_status(job, 1, 4)
        started.set()
        release.wait(10)
        return ""

    with worker_thread([any_server], {"status_task": slow}):
        assert started.wait(10)
        status = client.get_job_status(queued, poll_timeout=10).status
        assert (status["known"], status["running"], status["numerator"], status["denominator"]) == (True, True, 1, 4)
        release.set()
    status = client.get_job_statuses([queued], poll_timeout=10)[0].status
    assert status["known"] is False and not queued.timed_out


def test_same_unique_is_one_job_with_one_result_for_both(any_server):
    client = gearman.GearmanClient([any_server.address])
    requests = client.submit_multiple_jobs([dict(task="uniq", data="a", unique="same-key"),
                                            dict(task="uniq", data="a", unique="same-key")],
                                           wait_until_complete=False, poll_timeout=10)
    assert requests[0].job.handle == requests[1].job.handle
    runs = []

    def once(worker, job):
        runs.append(job.unique)
        return "result"

    with worker_thread([any_server], {"uniq": once}):
        client.wait_until_jobs_completed(requests, poll_timeout=10)
    assert runs == ["same-key"]
    assert [r.result for r in requests] == ["result", "result"]


def test_binary_payloads_survive_both_encoders(any_server):
    payload = bytes(range(256)) * 3

    class RawWorker(gearman.GearmanWorker):
        data_encoder = gearman.BytesDataEncoder

    class RawClient(gearman.GearmanClient):
        data_encoder = gearman.BytesDataEncoder

    with worker_thread([any_server], {"raw": echo}, worker_class=RawWorker):
        text = gearman.GearmanClient([any_server.address]).submit_job("raw", payload, poll_timeout=10)
        raw = RawClient([any_server.address]).submit_job("raw", payload, poll_timeout=10)
    assert isinstance(text.result, str) and gearman.TextDataEncoder.encode(text.result) == payload
    assert raw.result == payload


def test_finished_requests_are_not_kept(any_server):
    client = gearman.GearmanClient([any_server.address])
    with worker_thread([any_server], {"echo": echo}):
        for i in range(20):
            assert client.submit_job("echo", str(i), poll_timeout=10).result == str(i)
        client.submit_job("echo", "bg", background=True, poll_timeout=10)
    states = [c.state for c in client.connection_list]
    assert all(not s.awaiting and not s.by_handle for s in states)


def test_abandoned_requests_are_freed(any_server):
    client = gearman.GearmanClient([any_server.address])
    for i in range(200):  # nobody works "abandoned": each request times out and the program drops it
        client.submit_job("abandoned", str(i), wait_until_complete=False, poll_timeout=10)
    gc.collect()
    state = client.connection_list[0].state
    assert sum(len(watchers) for watchers in state.by_handle.values()) == 0
    assert len(state.by_handle) <= 128  # empty entries are swept as the map grows


def test_unreachable_servers_raise_server_unavailable():
    client = gearman.GearmanClient([f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"])
    with pytest.raises(gearman.ServerUnavailable):
        client.submit_job("echo", "x", poll_timeout=5)


def test_lost_connection_gives_job_unknown_then_resubmits(any_server):
    proxy = CountingProxy(any_server)
    try:
        client = gearman.GearmanClient([proxy.address])
        request = client.submit_job("later", "payload", wait_until_complete=False, max_retries=1, poll_timeout=10)
        assert request.state == gearman.JOB_CREATED
        proxy.drop()
        client.wait_until_jobs_completed([request], poll_timeout=10)
        assert request.state == gearman.JOB_UNKNOWN and request.connection_failed and not request.timed_out
        with worker_thread([any_server], {"later": echo}):
            client.submit_multiple_requests([request], poll_timeout=10)
        assert request.state == gearman.JOB_COMPLETE and request.result == "payload"
        assert request.connection_attempts == 2
        request.state = gearman.JOB_UNKNOWN  # pretend it failed again: max_retries=1 allows no third attempt
        with pytest.raises(gearman.ExceededConnectionAttempts):
            client.submit_multiple_requests([request], poll_timeout=10)
    finally:
        proxy.close()


def test_server_error_reply_fails_the_request(any_server):
    client = gearman.GearmanClient([any_server.address])
    # maxqueue only applies to a function the server knows
    first = client.submit_job("capped", "1", background=True, poll_timeout=10)
    admin = gearman.GearmanAdminClient([any_server.address])
    assert admin.send_maxqueue("capped", 1) == "OK"
    second = client.submit_job("capped", "2", background=True, poll_timeout=10)
    assert first.state == gearman.JOB_CREATED
    assert second.state == gearman.JOB_FAILED and not second.timed_out
    assert second.error is not None and second.error[0] == b"QUEUE_ERROR"


def test_large_payloads_go_through_partial_writes(any_server):
    payload = bytes(range(256)) * (16 * 1024)  # 4 MiB, far more than one socket write takes

    class RawWorker(gearman.GearmanWorker):
        data_encoder = gearman.BytesDataEncoder

    class RawClient(gearman.GearmanClient):
        data_encoder = gearman.BytesDataEncoder

    with worker_thread([any_server], {"big": lambda w, j: j.data[::-1]}, worker_class=RawWorker):
        request = RawClient([any_server.address]).submit_job("big", payload, poll_timeout=30)
    assert request.state == gearman.JOB_COMPLETE and request.result == payload[::-1]
