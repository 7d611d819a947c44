"""The client library (Client and AsyncClient) against our server and the C gearmand, with our worker."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from geartrain.client import AsyncClient, Client, Task
from geartrain.codecs import JSON
from geartrain.errors import JobException, JobFailed, JobTimeout, NoServerAvailable
from geartrain.worker import Worker, WorkFailed
from tests.conftest import free_port


@contextmanager
def worker_thread(address: str | list[str], functions: dict[str, Callable], **kwargs) -> Iterator[Worker]:
    """Our Worker serving FUNCTIONS in a background thread for the duration of the block."""
    worker = Worker(address, **kwargs)
    for name, fn in functions.items():
        worker.register(name, fn)
    thread = threading.Thread(target=worker.work, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(10)
        assert not thread.is_alive(), "worker did not stop"


def rev(job):
    return job.data[::-1]


def progress(job):
    job.send_data(b"part1")
    job.send_warning(b"careful")
    job.send_status(1, 2)
    job.send_data(b"part2")
    job.send_status(2, 2)
    return b"whole"


def boom(job):
    raise ValueError("bad input: " + job.data.decode())


def refuse(job):
    raise WorkFailed()


def fail_explicitly(job):
    job.fail()
    return b"ignored"


FUNCTIONS = {"rev": rev, "progress": progress, "boom": boom, "refuse": refuse, "fail": fail_explicitly}


def test_submit_and_wait(any_server):
    with worker_thread(any_server.address, FUNCTIONS), Client(any_server.address) as client:
        assert client.submit("rev", b"hello") == b"olleh"
        assert client.submit("rev", "héllo") == "héllo".encode()[::-1]  # str goes as UTF-8
        assert client.submit("rev", b"\x00\x01binary\x00") == b"\x00yranib\x01\x00"


def test_run_many_tasks_concurrently(any_server):
    tasks = [Task("rev", str(i)) for i in range(1, 200)]
    with worker_thread(any_server.address, FUNCTIONS, concurrency=4), Client(any_server.address) as client:
        client.run(tasks, timeout=30)
    assert all(t.error is None for t in tasks)
    assert sum(int(t.result[::-1]) for t in tasks) == sum(range(1, 200))
    assert all(t.handle for t in tasks)


def test_json_codec(any_server):
    def add(job):
        return {"sum": job.data["a"] + job.data["b"]}

    with worker_thread(any_server.address, {"add": add}, codec=JSON), \
            Client(any_server.address, codec=JSON) as client:
        assert client.submit("add", {"a": 2, "b": 40}) == {"sum": 42}


def test_background_job_handle_and_status(any_server):
    with Client(any_server.address) as client:
        job = client.submit_background("nobody-works-this", b"x", unique="bg-1")
        assert job.handle and job.server == any_server.address
        status = client.get_status(job.handle)
        assert status.known and not status.running
        by_unique = client.get_status_unique("bg-1")
        assert by_unique.known and by_unique.unique == b"bg-1"
        unknown = client.get_status(b"H:nowhere:1")
        assert not unknown.known


def test_worker_exception_is_raised_with_its_data(any_server):
    with worker_thread(any_server.address, FUNCTIONS), Client(any_server.address) as client:
        with pytest.raises(JobException) as info:
            client.submit("boom", b"xyz", timeout=10)
        assert info.value.data == b"ValueError: bad input: xyz"
        with pytest.raises(JobFailed) as failed:
            client.submit("refuse", b"", timeout=10)
        assert not isinstance(failed.value, JobException)
        with pytest.raises(JobFailed):
            client.submit("fail", b"", timeout=10)
        assert client.submit("rev", b"ok") == b"ko"  # the connection is still fine


def test_without_exceptions_option_the_client_sees_a_fail(any_server):
    with worker_thread(any_server.address, FUNCTIONS), Client(any_server.address, exceptions=False) as client:
        with pytest.raises(JobFailed) as info:
            client.submit("boom", b"xyz", timeout=10)
        assert not isinstance(info.value, JobException)


def test_progress_callbacks_and_event_stream(any_server):
    seen = []

    async def main():
        async with AsyncClient(any_server.address) as client:
            job = await client.submit_job(
                "progress", b"", on_data=lambda j, d: seen.append(("data", d)),
                on_warning=lambda j, d: seen.append(("warning", d)),
                on_status=lambda j, n, d: seen.append(("status", (n, d))))
            events = [(ev.kind, ev.data) async for ev in job.events()]
            return events, await job.result(10), (job.numerator, job.denominator)

    with worker_thread(any_server.address, FUNCTIONS):
        events, result, status = asyncio.run(main())
    expected = [("data", b"part1"), ("warning", b"careful"), ("status", (1, 2)), ("data", b"part2"),
                ("status", (2, 2))]
    assert seen == expected
    assert events == expected + [("complete", b"whole")]
    assert result == b"whole" and status == (2, 2)


def test_priorities_run_high_first(any_server):
    order = []

    def record(job):
        order.append(job.data)
        return b""


    async def main():
        async with AsyncClient(any_server.address) as client:
            jobs = []
            for prio in ("low", "normal", "high", "low", "normal", "high"):
                jobs.append(await client.submit_job("prio", prio, priority=prio))
            for job in jobs:
                await job.created(5)
            with worker_thread(any_server.address, {"prio": record}):
                await asyncio.wait_for(asyncio.gather(*(j.result() for j in jobs)), 20)

    asyncio.run(main())
    assert order == [b"high", b"high", b"normal", b"normal", b"low", b"low"]


def test_run_at_epoch(any_server):
    ran = []

    def record(job):
        ran.append(time.time())
        return b""

    with Client(any_server.address) as client:
        when = int(time.time()) + 2
        job = client.submit_background("later", b"x", when=when, unique="epoch-1")
        assert job.handle
        assert client.get_status(job.handle).known
        if any_server.kind == "gearmand":
            return  # gearmand 1.1.20 never wakes a sleeping worker for an epoch job (gearmand issue #101)
        with worker_thread(any_server.address, {"later": record}):
            deadline = time.time() + 10
            while not ran and time.time() < deadline:
                time.sleep(0.05)
    assert ran and ran[0] >= when - 0.01


def test_timeout_and_cancelled_wait_leave_the_job_alone(any_server):
    async def main():
        async with AsyncClient(any_server.address) as client:
            job = await client.submit_job("rev", b"later", unique="slow-1")
            with pytest.raises(JobTimeout):
                await job.result(timeout=0.2)
            waiter = asyncio.ensure_future(job.result())
            await asyncio.sleep(0.05)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            with worker_thread(any_server.address, FUNCTIONS):
                return await job.result(timeout=10)

    assert asyncio.run(main()) == b"retal"


def test_sync_wait_can_be_cancelled_from_another_thread(any_server):
    with Client(any_server.address) as client:
        job = client.submit_job("nobody-works-this-either", b"x")
        waiting = threading.Event()

        def canceller():
            while not waiting.wait(0.05):  # until result() below has given up
                job.cancel()

        threading.Thread(target=canceller, daemon=True).start()
        try:
            with pytest.raises(Exception) as info:
                job.result()
        finally:
            waiting.set()
        assert type(info.value).__name__ == "CancelledError"
        assert client.get_status(job.handle).known  # the job itself is still queued


def test_no_server_available():
    dead = f"127.0.0.1:{free_port()}"
    with Client(dead, wait_for_server=0.3, connect_timeout=0.5) as client:
        with pytest.raises(NoServerAvailable):
            client.submit("rev", b"x")


def test_submit_reaches_a_server_that_starts_late(tmp_path):
    from tests.conftest import start_gearmand

    port = free_port()

    async def main():
        async with AsyncClient(f"127.0.0.1:{port}", wait_for_server=10) as client:
            submitting = asyncio.ensure_future(client.submit_background("late", b"x"))
            await asyncio.sleep(0.5)
            server = await asyncio.to_thread(start_gearmand, tmp_path, port=port)
            try:
                job = await asyncio.wait_for(submitting, 15)
                return job.handle
            finally:
                server.stop()

    assert asyncio.run(main())


def test_tls_client_and_worker(tmp_path):
    """Client and worker over TLS (ssl.SSLContext), against our server with --ssl."""
    import ssl
    import subprocess

    from tests.conftest import start_geartrain

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    server = start_geartrain(tmp_path, "--ssl", "--ssl-certificate", str(cert), "--ssl-key", str(key),
                             "--ssl-ca-file", str(cert))
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        with worker_thread(server.address, FUNCTIONS, ssl=ctx), Client(server.address, ssl=ctx) as client:
            assert client.submit("rev", b"secret", timeout=10) == b"terces"
        with Client(server.address, wait_for_server=0.5, max_backoff=0.1) as plain:  # no TLS: no talk
            with pytest.raises(ConnectionError):  # dropped before JOB_CREATED every time, then given up
                plain.submit("rev", b"x", timeout=20)
    finally:
        server.stop()


def test_same_unique_coalesces_and_both_waiters_get_the_result(any_server):
    calls = []

    def slow_rev(job):
        calls.append(job.unique)
        time.sleep(0.2)
        return job.data[::-1]

    with Client(any_server.address) as client:
        first = client.submit_job("coalesce", b"abc", unique="same")
        second = client.submit_job("coalesce", b"abc", unique="same")
        with worker_thread(any_server.address, {"coalesce": slow_rev}):
            assert first.result(10) == b"cba"
            assert second.result(10) == b"cba"
        assert first.handle == second.handle
    assert calls == [b"same"]


def test_sync_event_stream(any_server):
    with worker_thread(any_server.address, FUNCTIONS), Client(any_server.address) as client:
        job = client.submit_job("progress", b"")
        kinds = [ev.kind for ev in job.events()]
    assert kinds == ["data", "warning", "status", "data", "status", "complete"]
