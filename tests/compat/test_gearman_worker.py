"""GearmanWorker (geartrain.compat.gearman) against our server and the C gearmand: it sleeps until
NOOP instead of polling, takes queued work on start, serves several servers, and its hooks run."""

from __future__ import annotations

import threading
import time

import pytest

import geartrain.compat.gearman as gearman
from geartrain.protocol.packets import T
from tests.conftest import free_port, start_gearmand, start_geartrain

from ._support import CountingProxy, wait_for_workers, worker_thread


def test_worker_sleeps_until_noop_instead_of_polling(any_server):
    """A job submitted while the worker sleeps is taken on NOOP, long before its 60 s poll timeout,
    and the worker sends a bounded number of GRAB_JOBs per job (no GRAB/NO_JOB ping-pong)."""
    proxy = CountingProxy(any_server)
    polls = []
    done = threading.Event()
    jobs = 5

    class CountingWorker(gearman.GearmanWorker):
        def after_poll(self, any_activity):
            polls.append(any_activity)
            return True

    def work(worker, job):
        if job.data == str(jobs - 1):
            worker.stop_event.set()
            done.set()
        return job.data

    try:
        with worker_thread([any_server], {"sleepy": work}, worker_class=CountingWorker, poll_timeout=60.0,
                           addresses=[proxy.address]):
            client = gearman.GearmanClient([any_server.address])
            time.sleep(0.3)
            assert proxy.count(T.PRE_SLEEP) >= 1  # registered, grabbed nothing, went to sleep
            idle_polls, idle_grabs = len(polls), proxy.count(T.GRAB_JOB_UNIQ)
            time.sleep(0.5)  # a polling worker would wake up and grab in here; a sleeping one does nothing
            assert (len(polls), proxy.count(T.GRAB_JOB_UNIQ)) == (idle_polls, idle_grabs)
            for i in range(jobs):
                request = client.submit_job("sleepy", str(i), poll_timeout=20)
                assert request.state == gearman.JOB_COMPLETE and request.result == str(i), request
            assert done.wait(10)
        # Per job at most: the grab after NOOP that gets it and the grab after it that gets NO_JOB.
        assert proxy.count(T.GRAB_JOB_UNIQ) <= idle_grabs + 2 * jobs
        assert proxy.count(T.GRAB_JOB) == 0
    finally:
        proxy.close()


def test_worker_takes_jobs_queued_before_it_started(any_server):
    client = gearman.GearmanClient([any_server.address])
    for i in range(5):
        client.submit_job("backlog", str(i), background=True, poll_timeout=10)
    seen = []
    done = threading.Event()

    def take(worker, job):
        seen.append(job.data)
        if len(seen) == 5:
            done.set()
        return ""

    with worker_thread([any_server], {"backlog": take}):
        assert done.wait(10)
    assert sorted(seen) == [str(i) for i in range(5)]


def test_worker_serves_two_servers(any_server, tmp_path):
    other = (start_geartrain if any_server.kind == "geartrain" else start_gearmand)(tmp_path)
    try:
        with worker_thread([any_server, other], {"both": lambda w, j: j.data.upper()}):
            for server in (any_server, other, any_server, other):
                request = gearman.GearmanClient([server.address]).submit_job("both", server.kind, poll_timeout=10)
                assert request.result == server.kind.upper()
    finally:
        other.stop()


def test_worker_takes_turns_between_busy_servers(any_server, tmp_path):
    other = (start_geartrain if any_server.kind == "geartrain" else start_gearmand)(tmp_path)
    try:
        for server, tag in ((any_server, "a"), (other, "b")):
            client = gearman.GearmanClient([server.address])
            client.submit_multiple_jobs([dict(task="busy", data=tag) for _ in range(10)], background=True,
                                        poll_timeout=10)
        seen = []
        done = threading.Event()

        def take(worker, job):
            seen.append(job.data)
            if len(seen) == 20:
                done.set()
            return ""

        with worker_thread([any_server, other], {"busy": take}):
            assert done.wait(20)
    finally:
        other.stop()
    assert sorted(seen) == ["a"] * 10 + ["b"] * 10
    assert set(seen[:4]) == {"a", "b"}, seen  # both backlogs are served from the start


def test_job_fields_seen_by_the_callback(any_server):
    seen = {}

    def look(worker, job):
        seen.update(task=job.task, data=job.data, unique=job.unique, handle=job.handle)
        return ""

    with worker_thread([any_server], {b"bytes_name": look}):
        request = gearman.GearmanClient([any_server.address]).submit_job("bytes_name", "d", unique="u-1",
                                                                          poll_timeout=10)
    assert request.state == gearman.JOB_COMPLETE
    assert seen == dict(task=b"bytes_name", data="d", unique="u-1", handle=request.job.handle)


def test_register_unregister_and_client_id(any_server):
    worker = gearman.GearmanWorker([any_server.address])
    worker.set_client_id("compat-worker")
    worker.register_task("keep", lambda w, j: "")
    worker.register_task("drop", lambda w, j: "")
    admin = gearman.GearmanAdminClient([any_server.address])
    try:
        worker.establish_worker_connections()  # connect: SET_CLIENT_ID and CAN_DO for both tasks
        wait_for_workers(any_server, "drop")
        worker.unregister_task("drop")  # on a live connection: CANT_DO
        worker.set_client_id("renamed-worker")
        for connection in worker.connection_list:
            worker.flush_connection(connection, timeout=5)
        expected = [("renamed-worker", ("keep",))]
        deadline = time.monotonic() + 5  # the server reads the worker's and the admin's sockets independently
        while True:
            rows = [(w["client_id"], w["tasks"]) for w in admin.get_workers() if w["tasks"]]
            if rows == expected or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        worker.shutdown()
    assert rows == expected


def test_after_job_and_after_poll_can_stop_the_loop(any_server):
    calls = []

    class OneJobWorker(gearman.GearmanWorker):
        def after_job(self):
            calls.append("after_job")
            return False

    worker = OneJobWorker([any_server.address])
    worker.register_task("one", lambda w, j: "ok")
    gearman.GearmanClient([any_server.address]).submit_job("one", "", background=True, poll_timeout=10)
    worker.work(poll_timeout=5)  # returns after the first job
    assert calls == ["after_job"]
    assert all(not c.connected for c in worker.connection_list)


def test_work_raises_server_unavailable_without_servers():
    worker = gearman.GearmanWorker([f"127.0.0.1:{free_port()}"])
    worker.register_task("x", lambda w, j: "")
    with pytest.raises(gearman.ServerUnavailable):
        worker.work(poll_timeout=0.5)


def test_unencodable_result_fails_the_job_and_the_worker_goes_on(any_server):
    def answer(worker, job):
        return 42 if job.data == "int" else "fine"

    with worker_thread([any_server], {"answer": answer}):
        client = gearman.GearmanClient([any_server.address])
        bad = client.submit_job("answer", "int", poll_timeout=10)
        good = client.submit_job("answer", "str", poll_timeout=10)
    assert bad.state == gearman.JOB_FAILED
    assert good.state == gearman.JOB_COMPLETE and good.result == "fine"


def test_callback_ending_its_job_itself_sends_nothing_more(any_server):
    proxy = CountingProxy(any_server)

    def early(worker, job):
        worker.send_job_complete(job, "early")
        return "late"

    try:
        with worker_thread([any_server], {"early": early}, addresses=[proxy.address]):
            client = gearman.GearmanClient([any_server.address])
            requests = [client.submit_job("early", str(i), poll_timeout=10) for i in range(2)]
            # The proxy counts in stream order: once job 2's result is here, any extra packet for job 1 was seen.
            count = proxy.count(T.WORK_COMPLETE)
        assert [r.result for r in requests] == ["early", "early"]
        assert count == 2
    finally:
        proxy.close()
