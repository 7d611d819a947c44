"""Client.result / AsyncClient.result and AdminClient's calls on the failed-job registry and the policies, against
a running geartrain server (and what the C gearmand, which has none of this, answers)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from geartrain.adminclient import AdminClient
from geartrain.client import AsyncClient, Client
from geartrain.errors import JobUnknown, NoServerAvailable, ServerError
from geartrain.outcome import JobResult
from geartrain.protocol.packets import T
from tests.conftest import Server, free_port, start_gearmand, start_geartrain
from tests.interop.wire import Wire
from tests.server.test_http import grab


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = start_geartrain(tmp_path, "--policy", "kept", "keep=60", "--policy", "flaky", "tries=2 delay=0",
                        "--policy", "slow", "tries=2 delay=60")
    yield s
    s.stop()


def test_a_kept_result_by_handle_by_unique_and_by_job(server: Server) -> None:
    with Client(server.address) as client, Wire(server.host, server.port) as worker:
        job = client.submit_background("kept", b"in", unique="order-9")
        worker.send(T.CAN_DO, b"kept")
        worker.send(T.WORK_COMPLETE, grab(worker)[0], b"out\x00put")
        for key in (job.handle, "order-9", job):
            got = client.result(key)
            assert (got.state, got.data, got.ok, got.handle, got.unique, got.server) == \
                ("complete", b"out\x00put", True, job.handle, b"order-9", server.address)
        raised = client.submit_background("kept", b"x")
        worker.send(T.WORK_EXCEPTION, grab(worker)[0], b"ValueError: nope")
        got = client.result(raised)
        assert (got.state, got.error, got.data, got.outcome) == ("exception", "ValueError: nope", b"", "exception")
        with pytest.raises(JobUnknown, match="no server knows job never-was"):
            client.result("never-was")
        with pytest.raises(ValueError):
            client.result("two words")


def test_waiting_polls_until_the_job_ends(server: Server) -> None:
    with Client(server.address) as client, Wire(server.host, server.port) as worker:
        job = client.submit_background("kept", b"in")
        worker.send(T.CAN_DO, b"kept")
        handle = grab(worker)[0]
        worker.send(T.WORK_STATUS, handle, b"1", b"3")
        polls: list[JobResult] = []
        seen_running = threading.Event()

        def on_poll(result: JobResult) -> None:
            polls.append(result)
            if result.state == "running":
                seen_running.set()

        def finish() -> None:
            assert seen_running.wait(10)
            worker.send(T.WORK_COMPLETE, handle, b"done")

        finisher = threading.Thread(target=finish)
        finisher.start()
        got = client.result(job, wait=30, on_poll=on_poll)
        finisher.join(10)
        assert got.state == "complete" and got.data == b"done"
        assert polls[0].state == "running" and polls[0].progress == (1, 3) and polls[-1] is got
        # a job not over when the wait ends comes back as it stands
        queued = client.submit_background("nobody-works-this", b"")
        got = client.result(queued, wait=0.2)
        assert (got.state, got.done, got.outcome) == ("queued", False, None)


def test_a_job_waiting_for_its_next_try_and_one_whose_outcome_is_not_kept(server: Server) -> None:
    with Client(server.address) as client, Wire(server.host, server.port) as worker:
        job = client.submit_background("slow", b"")
        worker.send(T.CAN_DO, b"slow")
        worker.send(T.WORK_EXCEPTION, grab(worker)[0], b"try later")
        got = client.result(job)
        assert (got.state, got.tries, got.error) == ("waiting", 2, "exception: try later")
        plain = client.submit_background("not-kept", b"")
        worker.send(T.CAN_DO, b"not-kept")
        handle = grab(worker)[0]  # running; it ends (not kept) while the client waits for it

        def on_poll(result: JobResult) -> None:
            worker.send(T.WORK_COMPLETE, handle, b"gone")

        with pytest.raises(JobUnknown, match="its outcome is not kept"):
            client.result(plain, wait=30, on_poll=on_poll)


def test_async_client_result(server: Server) -> None:
    async def main() -> JobResult:
        async with AsyncClient(server.address) as client:
            job = await client.submit_background("kept", b"")
            with Wire(server.host, server.port) as worker:
                worker.send(T.CAN_DO, b"kept")
                worker.send(T.WORK_COMPLETE, grab(worker)[0], b"async")
            return await client.result(job.handle, wait=10)

    assert asyncio.run(main()).data == b"async"


def test_the_registry_and_policies_through_the_admin_client(server: Server) -> None:
    admin = AdminClient(server.address)
    with Client(server.address) as client, Wire(server.host, server.port) as worker:
        client.submit_background("flaky", b"p1", unique="f1")
        client.submit_background("flaky", b"p2")
        worker.send(T.CAN_DO, b"flaky")
        for n in range(4):  # two jobs, two tries each
            worker.send(T.WORK_EXCEPTION, grab(worker)[0], b"boom %d" % n)
        entries = admin.failed("flaky")
        assert [(e.unique, e.tries, e.server) for e in entries] == [(b"f1", 2, server.address), (b"", 2,
                                                                                               server.address)]
        shown = admin.failed_job(entries[0].id)
        assert shown.data == b"p1" and [a.error for a in shown.attempts] == ["exception: boom 0", "exception: boom 2"]
        assert admin.requeue_failed(entries[0].id) == 1
        handle, _, data = grab(worker)
        assert data == b"p1"
        worker.send(T.WORK_COMPLETE, handle, b"")
        assert admin.discard_failed("flaky") == 1 and admin.failed() == []
    assert admin.policy("flaky") == {server.address: "tries=2 delay=0"}
    assert admin.policy("new", "tries=3  backoff=exponential") == {server.address: "tries=3 backoff=exponential"}
    assert admin.policies()[server.address]["new"] == "tries=3 backoff=exponential"
    with pytest.raises(ServerError, match="tries"):
        admin.policy("new", "tries=lots")
    assert admin.policy("new", "none") == {server.address: "none"}
    two = AdminClient([server.address, f"127.0.0.1:{free_port()}"])
    with pytest.raises(ValueError, match="ids are per server"):
        two.requeue_failed(1)


def test_what_the_c_gearmand_answers(tmp_path: Path) -> None:
    gearmand = start_gearmand(tmp_path)
    try:
        with Client(gearmand.address) as client:
            job = client.submit_background("f", b"")
            with pytest.raises(ServerError, match="UNKNOWN_COMMAND"):
                client.result(job)
        with pytest.raises(ServerError, match="UNKNOWN_COMMAND"):
            AdminClient(gearmand.address).failed()
    finally:
        gearmand.stop()
    with Client(gearmand.address, connect_timeout=1) as client, pytest.raises(NoServerAvailable):
        client.result("H:x:1")
