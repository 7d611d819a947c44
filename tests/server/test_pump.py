"""server/pump.py: one write per peer per flush (big payloads by writelines), busy polling after a write, and the
loop polling while grabs wait for a job."""

from __future__ import annotations

import pytest

from geartrain.server.pump import Pump
from geartrain.server.state import State


def pump_for(busy_poll: float, grab_wait: float = 150e-6) -> Pump:
    """A Pump on a FakeLoop for a State set up as the server sets it (grabs that find no job wait)."""
    return Pump(State(defer_no_job=True, grab_wait=grab_wait), busy_poll=busy_poll, loop=FakeLoop())


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


def pump_with_jobs(jobs: int, busy_poll: float):
    from geartrain.protocol.packets import T
    pump = pump_for(busy_poll=busy_poll)
    client = pump.state.connect(7, "127.0.0.1")
    client.transport = Sink()
    for i in range(jobs):
        pump.state.dispatch[T.SUBMIT_JOB](client, (b"f", b"", b"%d" % i))
    return pump, client


@pytest.mark.parametrize("jobs, busy_poll, polls", [(1, 50e-6, True), (100, 50e-6, True), (1, 0.0, False),
                                                    (100, 0.0, False)])
def test_busy_poll_after_a_write_however_many_jobs_are_held_unless_turned_off(jobs, busy_poll, polls):
    # with many jobs held the workers wait on the pump as much as a lone job does (scenario 3)
    pump, client = pump_with_jobs(jobs, busy_poll)
    pump.flush()
    assert client.transport.data.count(b"\0RES") == jobs  # the JOB_CREATED replies were written
    assert pump.polling is polls
    assert (pump._poll in pump.loop.soon) is polls


def test_busy_poll_keeps_the_loop_polling_until_its_window_ends():
    pump, _ = pump_with_jobs(1, 0.05)
    pump.flush()
    pump.loop.soon.clear()
    pump._poll()  # within the 50 ms window: polls on
    assert pump.loop.soon == [pump._poll] and pump.polling
    pump.loop.soon.clear()
    pump.poll_until = 0.0  # the window is over
    pump._poll()
    assert pump.loop.soon == [] and not pump.polling
    pump.flush()  # nothing written: no new window
    assert not pump.polling


def waiting_worker(grab_wait: float, busy_poll: float = 50e-6):
    """A pump whose one worker's grab found no job and waits (flushed once)."""
    import time

    from geartrain.protocol.packets import T
    pump = pump_for(busy_poll=busy_poll, grab_wait=grab_wait)
    worker = pump.state.connect(8, "127.0.0.1")
    worker.transport = Sink()
    pump.state.now = time.time()
    pump.state.dispatch[T.CAN_DO](worker, (b"f",))
    pump.state.dispatch[T.GRAB_JOB_UNIQ](worker, ())
    pump.flush()
    return pump, worker


def test_a_waiting_grab_gets_the_next_job_and_keeps_the_loop_polling_meanwhile():
    from geartrain.protocol.packets import T

    pump, worker = waiting_worker(0.05)
    assert worker.transport.data == b"" and pump.polling  # no NO_JOB yet; the loop polls
    client = pump.state.connect(9, "127.0.0.1")
    client.transport = Sink()
    pump.state.dispatch[T.SUBMIT_JOB](client, (b"f", b"", b"job"))
    pump.flush()
    assert worker.transport.data.startswith(b"\0RES\0\0\0\x1f")  # JOB_ASSIGN_UNIQ, no NO_JOB before it
    assert pump.state.workers.grabs == []


@pytest.mark.parametrize("busy_poll", [50e-6, 0.0])
def test_the_poll_goes_on_while_a_grab_waits_and_answers_no_job_when_its_wait_is_over(busy_poll):
    import time

    pump, worker = waiting_worker(0.05, busy_poll)
    assert pump.polling  # polling for the waiting grab, busy poll or not
    pump.loop.soon.clear()
    pump.poll_until = 0.0  # any busy poll window is over, the grab's wait is not
    pump._poll()
    assert pump.loop.soon == [pump._poll] and len(pump.state.workers.grabs) == 1 and worker.transport.data == b""
    pump.loop.soon.clear()
    pump.state.workers.grabs[0] = (*pump.state.workers.grabs[0][:3], time.time() - 1)  # its wait is over
    pump._poll()
    assert pump.loop.soon == [pump.flush] and not pump.polling and pump.state.workers.grabs == []
    pump.flush()
    assert worker.transport.data == b"\0RES\0\0\0\x0a\0\0\0\0"  # NO_JOB


def test_without_grab_wait_a_grab_waits_only_to_the_end_of_the_turn():
    pump, worker = waiting_worker(0.0)
    assert worker.transport.data == b"\0RES\0\0\0\x0a\0\0\0\0" and pump.state.workers.grabs == []


class PartsSink(Sink):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[list[bytes]] = []

    def writelines(self, parts) -> None:
        self.lines.append(list(parts))
        self.data += b"".join(parts)


def test_flush_hands_output_holding_a_big_payload_to_writelines_and_joins_the_rest():
    from geartrain.protocol.packets import T
    from geartrain.server.lifecycle import BIG_PART

    pump = pump_for(busy_poll=0.0)
    client = pump.state.connect(7, "127.0.0.1")
    client.transport = PartsSink()
    dispatch = pump.state.dispatch
    dispatch[T.ECHO_REQ](client, (b"small",))
    dispatch[T.ECHO_REQ](client, (b"again",))
    pump.flush()
    assert client.transport.lines == [] and client.transport.data.count(b"\0RES") == 2  # joined, one write
    payload = b"p" * BIG_PART
    pump.state.outbox.send_parts(client, b"head", payload)
    pump.flush()
    assert len(client.transport.lines) == 1 and client.transport.lines[0][1] is payload
    assert not client.big and client.out == []
