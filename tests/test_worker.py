"""The worker library (Worker and AsyncWorker) against our server and the C gearmand."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from geartrain.client import AsyncClient, Client
from geartrain.worker import AsyncWorker
from tests.conftest import ROOT, need_binary, start_gearmand
from tests.test_client import FUNCTIONS, worker_thread


def test_gearman_cli_client_with_our_worker(any_server):
    gearman = need_binary("gearman")
    with worker_thread(any_server.address, FUNCTIONS):
        out = subprocess.run([gearman, "-h", any_server.host, "-p", str(any_server.port), "-f", "rev", "hello"],
                             capture_output=True, timeout=20)
        assert out.returncode == 0
        assert out.stdout.startswith(b"olleh")
        out = subprocess.run([gearman, "-h", any_server.host, "-p", str(any_server.port), "-f", "refuse", "x"],
                             capture_output=True, timeout=20)
        assert out.returncode != 0


def test_job_object_carries_unique_handle_and_function(any_server):
    seen = {}

    def look(job):
        seen.update(unique=job.unique, handle=job.handle, function=job.function, data=job.data, server=job.server)
        return b""

    with worker_thread(any_server.address, {"look": look}), Client(any_server.address) as client:
        job = client.submit_job("look", b"payload", unique="u-123")
        job.result(10)
    assert seen == {"unique": b"u-123", "handle": job.handle, "function": b"look", "data": b"payload",
                    "server": any_server.address}


def test_concurrency_without_greed(any_server):
    """Two workers of concurrency 2 and four jobs that can only finish together: each worker takes two."""
    barrier = threading.Barrier(4, timeout=15)
    by_worker: dict[str, int] = {}
    lock = threading.Lock()

    def meet(name):
        def handler(job):
            with lock:
                by_worker[name] = by_worker.get(name, 0) + 1
            barrier.wait()
            return name.encode()
        return handler

    with worker_thread(any_server.address, {"meet": meet("a")}, concurrency=2), \
            worker_thread(any_server.address, {"meet": meet("b")}, concurrency=2), \
            Client(any_server.address) as client:
        jobs = [client.submit_job("meet", str(i)) for i in range(4)]
        results = sorted(j.result(20) for j in jobs)
    assert results == [b"a", b"a", b"b", b"b"]
    assert by_worker == {"a": 2, "b": 2}


def test_async_worker_runs_coroutines_concurrently(any_server):
    async def main():
        running = peak = 0

        async def slow(job):
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.2)
            running -= 1
            return job.data

        worker = AsyncWorker(any_server.address, concurrency=5)
        worker.register("slow", slow, timeout=30)
        serving = asyncio.ensure_future(worker.work())
        async with AsyncClient(any_server.address) as client:
            jobs = [await client.submit_job("slow", str(i)) for i in range(15)]
            results = [await j.result(20) for j in jobs]
        worker.stop()
        await asyncio.wait_for(serving, 10)
        return results, peak

    results, peak = asyncio.run(main())
    assert results == [str(i).encode() for i in range(15)]
    assert peak == 5


def test_idle_worker_sleeps_and_wakes_on_noop(any_server):
    async def main():
        worker = AsyncWorker(any_server.address)
        worker.register("rev", lambda job: job.data[::-1])
        serving = asyncio.ensure_future(worker.work())
        ws = worker.servers[0]
        for _ in range(100):  # connect, GRAB, NO_JOB, PRE_SLEEP
            await asyncio.sleep(0.05)
            if ws.sleeping:
                break
        await asyncio.sleep(0.2)  # and it stays that way: nothing polls
        asleep = (ws.sleeping, ws.grabs)
        async with AsyncClient(any_server.address) as client:
            result = await client.submit("rev", b"wake", timeout=10)
        worker.stop()
        await asyncio.wait_for(serving, 10)
        return asleep, result

    asleep, result = asyncio.run(main())
    assert asleep == (True, 0)  # PRE_SLEEP sent, no GRAB outstanding: nothing polls
    assert result == b"ekaw"


def test_worker_reconnects_and_registers_again(tmp_path):
    server = start_gearmand(tmp_path)
    port = server.port
    try:
        with worker_thread(server.address, FUNCTIONS, max_backoff=0.3), Client(server.address) as client:
            assert client.submit("rev", b"one", timeout=10) == b"eno"
            server.stop()
            server = start_gearmand(tmp_path, port=port)
            assert client.submit("rev", b"two", timeout=15) == b"owt"
    finally:
        server.stop()


WORKER_SCRIPT = """
import sys, time
from pathlib import Path
from geartrain.worker import Worker

marker = Path(sys.argv[2])
def slow(job):
    marker.write_text(job.data.decode())
    time.sleep(1.0)
    return b"finished " + job.data

w = Worker(sys.argv[1])
w.register("slow", slow)
print("served", w.work(), flush=True)
"""


def test_sigterm_finishes_the_running_job_then_exits(any_server, tmp_path: Path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    marker = tmp_path / "started"
    proc = subprocess.Popen([sys.executable, str(script), any_server.address, str(marker)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE)
    try:
        with Client(any_server.address) as client:
            first = client.submit_job("slow", b"1")
            second = client.submit_job("slow", b"2")
            deadline = time.monotonic() + 15
            while not marker.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert marker.read_text() == "1"
            proc.send_signal(signal.SIGTERM)
            assert first.result(10) == b"finished 1"
            assert proc.wait(10) == 0
            assert proc.stdout.read().strip() == b"served 1"
            status = client.get_status(second.handle)
            assert status.known and not status.running  # still queued for the next worker: nothing lost
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("max_jobs", [3])
def test_max_jobs(any_server, max_jobs):
    with Client(any_server.address) as client:
        jobs = [client.submit_job("rev", str(i)) for i in range(5)]
        from geartrain.worker import Worker

        worker = Worker(any_server.address)
        worker.register("rev", lambda job: job.data)
        assert worker.work(max_jobs, handle_signals=False) == max_jobs
        assert [j.result(5) for j in jobs[:max_jobs]] == [b"0", b"1", b"2"]
        assert client.get_status(jobs[4].handle).known


def test_pipelined_grabs_survive_a_trickle_of_jobs(any_server):
    """Several grabs in flight while jobs trickle in: NO_JOB and JOB_ASSIGN interleave, the worker must
    still go to sleep when the queue runs dry and wake up for the next job."""
    async def main():
        worker = AsyncWorker(any_server.address, concurrency=4, threads=False)
        worker.register("echo", lambda job: job.raw)
        serving = asyncio.ensure_future(worker.work())
        async with AsyncClient(any_server.address, timeout=10) as client:
            jobs = []
            for i in range(60):
                jobs.append(await client.submit_job("echo", str(i)))
                await asyncio.sleep(0.003)
            results = [await j for j in jobs]
            await asyncio.sleep(0.3)  # idle: every connection asleep
            results.append(await client.submit("echo", b"after"))
        worker.stop()
        await asyncio.wait_for(serving, 10)
        return results

    assert asyncio.run(main()) == [str(i).encode() for i in range(60)] + [b"after"]


class FakeLink:
    """Stands in for a Link: always up, records what the worker sends."""

    address = "fake:4730"
    up = True

    def __init__(self):
        self.sent = []

    def send(self, packet):
        self.sent.append(packet)

    send_now = send

    def flush(self):
        pass


def test_worker_state_machine_sleeps_after_a_late_assign():
    """Driven without sockets: NO_JOB for one grab, then JOB_ASSIGN for the last one -> PRE_SLEEP, NOOP -> GRAB."""
    from geartrain.protocol import pack_req
    from geartrain.protocol.packets import T

    worker = AsyncWorker("fake:4730", concurrency=2, threads=False)
    worker.register("echo", lambda job: job.raw)
    worker._max_jobs = None
    ws = worker.servers[0]
    link = ws.link = FakeLink()
    worker._pump()
    assert link.sent == [pack_req(T.GRAB_JOB_UNIQ)] * 2
    link.sent.clear()
    ws.packet(T.NO_JOB, ())
    assert link.sent == [] and ws.empty and not ws.sleeping  # one grab still out: not yet asleep
    ws.packet(T.JOB_ASSIGN_UNIQ, (b"H:1", b"echo", b"u", b"x"))
    assert link.sent == [pack_req(T.PRE_SLEEP), pack_req(T.WORK_COMPLETE, b"H:1", b"x")]
    assert ws.sleeping and ws.grabs == 0 and worker._running == 0
    link.sent.clear()
    ws.packet(T.NOOP, ())
    assert link.sent == [pack_req(T.GRAB_JOB_UNIQ)] * 2


def test_registration_packets_on_connect():
    from geartrain.protocol import pack_req
    from geartrain.protocol.packets import T

    worker = AsyncWorker("fake:4730", client_id="w-1")
    worker.register("plain", lambda job: b"")
    worker.register("timed", lambda job: b"", timeout=1.5)
    ws = worker.servers[0]
    link = ws.link = FakeLink()
    ws.up(link)
    assert link.sent == [pack_req(T.SET_CLIENT_ID, b"w-1"), pack_req(T.CAN_DO, b"plain"),
                         pack_req(T.CAN_DO_TIMEOUT, b"timed", b"1500"),  # milliseconds, as gearmand >= 1.1.19 reads
                         pack_req(T.GRAB_JOB_UNIQ)]


class FakeTransport:
    """What a Link's protocol writes to: records every write."""

    def __init__(self):
        self.writes = []

    def write(self, data):
        self.writes.append(bytes(data))

    def is_closing(self):
        return False

    def close(self):
        pass


class StubLoop:
    def __init__(self):
        self.soon = []  # call_soon callbacks, recorded instead of run

    def is_closed(self):
        return False

    def call_soon(self, callback, *args):
        self.soon.append(callback)


def wired_worker(handlers, **kwargs):
    """An AsyncWorker whose one Link is up on a FakeTransport, its registration already written; (worker, proto)."""
    from geartrain.transport import _Protocol

    worker = AsyncWorker("fake:4730", **kwargs)
    for name, handler in handlers.items():
        worker.register(name, handler)
    worker._max_jobs = None
    worker._loop = StubLoop()  # what WorkerJob.send_* look at: open, and this thread is the loop's
    worker._thread_id = threading.get_ident()
    ws = worker.servers[0]
    link = ws.link
    proto = _Protocol(link)
    proto.connection_made(FakeTransport())
    link._proto = proto
    link.up = True
    link._rx = True  # no loop here: the registration is flushed by hand below
    ws.up(link)
    link._rx = False
    link._flush()
    proto.transport.writes.clear()
    return worker, proto


def test_fast_path_answers_a_lone_assign_with_complete_and_grab_in_one_write():
    from geartrain.protocol import pack_req, pack_res
    from geartrain.protocol.packets import T

    seen = []

    def echo(job):
        seen.append((job.handle, job.function, job.unique, job.data, job.server))
        return job.raw

    worker, proto = wired_worker({"echo": echo})
    for i in range(3):
        proto.data_received(pack_res(T.JOB_ASSIGN_UNIQ, b"H:%d" % i, b"echo", b"u" if i else b"", b"x\0y%d" % i))
    assert proto.transport.writes == [pack_req(T.WORK_COMPLETE, b"H:%d" % i, b"x\0y%d" % i) + pack_req(T.GRAB_JOB_UNIQ)
                                      for i in range(3)]
    assert seen[0] == (b"H:0", b"echo", None, b"x\0y0", "fake:4730") and seen[1][2] == b"u"
    assert worker.jobs_done == 3 and worker._running == 0 and worker._grabs == 1


@pytest.mark.parametrize("busy_poll", [50e-6, 0.0])
def test_fast_path_busy_polls_for_the_next_job_after_asking_for_it_unless_turned_off(busy_poll):
    from geartrain.protocol import pack_res
    from geartrain.protocol.packets import T

    worker, proto = wired_worker({"echo": lambda job: job.raw}, busy_poll=busy_poll)
    proto.data_received(pack_res(T.JOB_ASSIGN_UNIQ, b"H:1", b"echo", b"", b"x"))
    proto.data_received(pack_res(T.JOB_ASSIGN_UNIQ, b"H:2", b"echo", b"", b"y"))
    assert len(proto.transport.writes) == 2
    loop = worker._loop
    assert loop.soon == ([worker._poll] if busy_poll else [])  # one poll chain, not one per job
    if busy_poll:
        loop.soon.clear()
        worker._poll()  # within the window: polls on
        assert loop.soon == [worker._poll] and worker._polling
        loop.soon.clear()
        worker._poll_until = 0.0  # the window is over: the loop may sleep
        worker._poll()
        assert loop.soon == [] and not worker._polling


def test_fast_path_failures_results_and_progress_as_the_general_path():
    from geartrain.codecs import JSON
    from geartrain.errors import WorkFailed
    from geartrain.protocol import pack_req, pack_res
    from geartrain.protocol.packets import T

    def boom(job):
        raise ValueError("bad")

    def refuse(job):
        raise WorkFailed("no")

    def chatty(job):
        job.send_data(b"part")
        job.send_status(1, 2)
        return b"whole"

    def quitter(job):
        job.fail()
        return b"ignored"

    grab = pack_req(T.GRAB_JOB_UNIQ)
    worker, proto = wired_worker({"boom": boom, "refuse": refuse, "chatty": chatty, "quitter": quitter})
    out = proto.transport.writes

    def assign(function):
        out.clear()
        proto.data_received(pack_res(T.JOB_ASSIGN_UNIQ, b"H:1", function, b"", b"in"))
        return b"".join(out)

    assert assign(b"boom") == (pack_req(T.WORK_EXCEPTION, b"H:1", b"ValueError: bad") + pack_req(T.WORK_FAIL, b"H:1")
                               + grab)
    assert assign(b"refuse") == pack_req(T.WORK_FAIL, b"H:1") + grab
    assert assign(b"chatty") == (pack_req(T.WORK_DATA, b"H:1", b"part") + pack_req(T.WORK_STATUS, b"H:1", b"1", b"2")
                                 + pack_req(T.WORK_COMPLETE, b"H:1", b"whole") + grab)
    assert assign(b"quitter") == pack_req(T.WORK_FAIL, b"H:1") + grab
    # not registered: the general path refuses it
    assert assign(b"other") == pack_req(T.WORK_FAIL, b"H:1") + grab
    assert worker._running == 0 and worker._grabs == 1

    jworker, jproto = wired_worker({"sum": lambda job: sum(job.data)}, codec=JSON)
    jproto.data_received(pack_res(T.JOB_ASSIGN_UNIQ, b"H:2", b"sum", b"", b"[1, 2]"))
    assert b"".join(jproto.transport.writes) == pack_req(T.WORK_COMPLETE, b"H:2", b"3") + grab


def test_fast_path_leaves_other_reads_to_the_parser():
    """Two assigns in one read, an assign split over two reads, and concurrency 2: same packets as ever."""
    from geartrain.protocol import pack_req, pack_res
    from geartrain.protocol.packets import T

    grab = pack_req(T.GRAB_JOB_UNIQ)
    done = [pack_req(T.WORK_COMPLETE, b"H:%d" % i, b"d%d" % i) for i in range(3)]
    assigns = [pack_res(T.JOB_ASSIGN_UNIQ, b"H:%d" % i, b"echo", b"", b"d%d" % i) for i in range(3)]
    worker, proto = wired_worker({"echo": lambda job: job.raw}, concurrency=2, threads=False)
    assert worker._grabs == 2  # sent on connect
    proto.data_received(assigns[0] + assigns[1])
    assert b"".join(proto.transport.writes) == done[0] + grab + done[1] + grab
    proto.transport.writes.clear()
    proto.data_received(assigns[2][:7])
    proto.data_received(assigns[2][7:])
    assert b"".join(proto.transport.writes) == done[2] + grab
    assert worker.jobs_done == 3 and worker._grabs == 2
