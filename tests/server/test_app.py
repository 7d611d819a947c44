"""server/app.py: process tuning (big payload buffers reuse heap memory) and busy polling after a write."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

FAULTS = """
import json, resource, sys
from geartrain.server.app import tune_malloc
tuned = tune_malloc() if sys.argv[1] == "tuned" else False
def arrive(i):
    # a 1 MiB packet read as the event loop reads it (256 KiB at a time), then joined into one payload
    chunks = [bytes(256 << 10) for _ in range(4)] + [bytes(12 + i % 64)]
    return b"".join(chunks)
keep = [arrive(i) for i in range(8)]  # as many 1 MiB payloads in flight as scenario 5c keeps
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(200):
    keep[i % 8] = arrive(i)  # a payload arrives, an older one is done with
after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps({"tuned": tuned, "faults": after - before}))
"""


def faults(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_big_payloads_reuse_heap_memory_instead_of_faulting_in_fresh_pages():
    plain, tuned = faults("plain"), faults("tuned")
    assert tuned["tuned"] is True
    # untuned, glibc maps the 256 KiB reads afresh and trims the heap under the joined payloads: page
    # faults (each a zeroed 4 KiB page) for most of the 200 MiB that pass through (8,186 here)
    assert plain["faults"] > 200 * 20, plain
    assert tuned["faults"] < plain["faults"] / 4, (plain, tuned)


class FakeLoop:
    """Records call_soon callbacks instead of running them."""

    def __init__(self) -> None:
        self.soon: list = []

    def call_soon(self, callback, *args):
        self.soon.append(callback)


class Sink:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


def server_with_jobs(jobs: int, busy_poll: float):
    from geartrain.protocol.packets import T
    from geartrain.server.app import Options, Server

    server = Server(Options(busy_poll=busy_poll))
    server.loop = FakeLoop()
    client = server.state.connect(7, "127.0.0.1")
    client.transport = Sink()
    for i in range(jobs):
        server.state.dispatch[T.SUBMIT_JOB](client, (b"f", b"", b"%d" % i))
    return server, client


@pytest.mark.parametrize("jobs, busy_poll, polls", [(1, 50e-6, True), (100, 50e-6, True), (1, 0.0, False),
                                                    (100, 0.0, False)])
def test_busy_poll_after_a_write_however_many_jobs_are_held_unless_turned_off(jobs, busy_poll, polls):
    # with many jobs held the workers wait on the server as much as a lone job does (scenario 3)
    server, client = server_with_jobs(jobs, busy_poll)
    server.flush()
    assert client.transport.data.count(b"\0RES") == jobs  # the JOB_CREATED replies were written
    assert server.polling is polls
    assert (server._poll in server.loop.soon) is polls


def test_busy_poll_keeps_the_loop_polling_until_its_window_ends():
    server, _ = server_with_jobs(1, 0.05)
    server.flush()
    server.loop.soon.clear()
    server._poll()  # within the 50 ms window: polls on
    assert server.loop.soon == [server._poll] and server.polling
    server.loop.soon.clear()
    server.poll_until = 0.0  # the window is over
    server._poll()
    assert server.loop.soon == [] and not server.polling
    server.flush()  # nothing written: no new window
    assert not server.polling


def waiting_worker(grab_wait: float, busy_poll: float = 50e-6):
    """A server whose one worker's grab found no job and waits (flushed once)."""
    import time

    from geartrain.protocol.packets import T
    from geartrain.server.app import Options, Server

    server = Server(Options(busy_poll=busy_poll, grab_wait=grab_wait))
    server.loop = FakeLoop()
    worker = server.state.connect(8, "127.0.0.1")
    worker.transport = Sink()
    server.state.now = time.time()
    server.state.dispatch[T.CAN_DO](worker, (b"f",))
    server.state.dispatch[T.GRAB_JOB_UNIQ](worker, ())
    server.flush()
    return server, worker


def test_a_waiting_grab_gets_the_next_job_and_keeps_the_loop_polling_meanwhile():
    from geartrain.protocol.packets import T

    server, worker = waiting_worker(0.05)
    assert worker.transport.data == b"" and server.polling  # no NO_JOB yet; the loop polls
    client = server.state.connect(9, "127.0.0.1")
    client.transport = Sink()
    server.state.dispatch[T.SUBMIT_JOB](client, (b"f", b"", b"job"))
    server.flush()
    assert worker.transport.data.startswith(b"\0RES\0\0\0\x1f")  # JOB_ASSIGN_UNIQ, no NO_JOB before it
    assert server.state.workers.grabs == []


@pytest.mark.parametrize("busy_poll", [50e-6, 0.0])
def test_the_poll_goes_on_while_a_grab_waits_and_answers_no_job_when_its_wait_is_over(busy_poll):
    import time

    server, worker = waiting_worker(0.05, busy_poll)
    assert server.polling  # polling for the waiting grab, busy poll or not
    server.loop.soon.clear()
    server.poll_until = 0.0  # any busy poll window is over, the grab's wait is not
    server._poll()
    assert server.loop.soon == [server._poll] and len(server.state.workers.grabs) == 1 and worker.transport.data == b""
    server.loop.soon.clear()
    server.state.workers.grabs[0] = (*server.state.workers.grabs[0][:3], time.time() - 1)  # its wait is over
    server._poll()
    assert server.loop.soon == [server.flush] and not server.polling and server.state.workers.grabs == []
    server.flush()
    assert worker.transport.data == b"\0RES\0\0\0\x0a\0\0\0\0"  # NO_JOB


def test_without_grab_wait_a_grab_waits_only_to_the_end_of_the_turn():
    server, worker = waiting_worker(0.0)
    assert worker.transport.data == b"\0RES\0\0\0\x0a\0\0\0\0" and server.state.workers.grabs == []


class PartsSink(Sink):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[list[bytes]] = []

    def writelines(self, parts) -> None:
        self.lines.append(list(parts))
        self.data += b"".join(parts)


def test_flush_hands_output_holding_a_big_payload_to_writelines_and_joins_the_rest():
    from geartrain.protocol.packets import T
    from geartrain.server.app import Options, Server
    from geartrain.server.lifecycle import BIG_PART

    server = Server(Options(busy_poll=0.0))
    server.loop = FakeLoop()
    client = server.state.connect(7, "127.0.0.1")
    client.transport = PartsSink()
    dispatch = server.state.dispatch
    dispatch[T.ECHO_REQ](client, (b"small",))
    dispatch[T.ECHO_REQ](client, (b"again",))
    server.flush()
    assert client.transport.lines == [] and client.transport.data.count(b"\0RES") == 2  # joined, one write
    payload = b"p" * BIG_PART
    server.state.outbox.send_parts(client, b"head", payload)
    server.flush()
    assert len(client.transport.lines) == 1 and client.transport.lines[0][1] is payload
    assert not client.big and client.out == []
