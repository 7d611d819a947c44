"""Where gearmand 1.1.20 itself is wrong, geartrain is tested on its own (correct) behaviour.

Each test names the gearmand bug it steps around (all seen on the Debian gearmand 1.1.20 here):

* a WORK_EXCEPTION forwarded as WORK_FAIL to a client that did not ask for exceptions carries the
  handle plus a stray NUL byte (its argument size counts the terminator); libgearman's own client
  then cannot match the handle and waits forever;
* a 64-byte unique is accepted but stored cut to 63 bytes: the worker gets the wrong unique and the
  workload with a NUL in front, a second submission with that unique is not coalesced, and
  GET_STATUS_UNIQUE with it closes the connection;
* an epoch job (SUBMIT_JOB_EPOCH) wakes the sleeping workers when it is submitted, too early (their
  GRAB_JOB gets NO_JOB), and nothing wakes them when its time comes (gearmand issue #101, fixed
  upstream only in 2026);
* a WORK_COMPLETE, WORK_DATA, WORK_WARNING or WORK_EXCEPTION that is the bare handle, without the NUL
  and data (Perl's Gearman::Worker sends a result that is false in Perl, "" or "0", so), and a
  WORK_STATUS short of its numerator or denominator (Perl's send_work_status): gearmand looks for the
  missing NUL past the packet's end, so the worker's stream is misframed (its next packet swallowed,
  or the connection dropped) and the job's client waits until the worker disconnects. geartrain takes
  the missing data as empty and a missing numerator or denominator as 0 (protocol/packets.py,
  OPTIONAL_TAIL).
"""

from __future__ import annotations

import time

import pytest

from geartrain.protocol import T

from .conftest import run, wait_workers
from .wire import connect, raw_packet

pytestmark = pytest.mark.interop

UNIQUE_64 = bytes(range(ord("A"), ord("A") + 26)) * 2 + b"0123456789ab"


def test_exception_becomes_a_clean_work_fail_without_the_option(geartrain):
    with connect(geartrain) as c, connect(geartrain) as w:
        w.send(T.CAN_DO, b"f")
        handle = c.submit(T.SUBMIT_JOB, b"f", b"", b"x")
        w.send(T.GRAB_JOB)
        assert w.expect(T.JOB_ASSIGN)[0] == handle
        w.send(T.WORK_EXCEPTION, handle, b"boom")
        raw = c.quiet(0.5)
        # gearmand 1.1.20 sends the payload handle + b"\0"
        assert raw == b"\0RES" + (14).to_bytes(4, "big") + len(handle).to_bytes(4, "big") + handle


def test_libgearman_client_without_exceptions_sees_the_failure(geartrain, c_programs, background):
    background([str(c_programs["gt_worker"]), "-p", str(geartrain.port), "-f", "exc"])
    wait_workers(geartrain, b"exc")
    out = run([str(c_programs["gt_client"]), "-p", str(geartrain.port), "submit", "fg", "exc", "-", "x"], timeout=25)
    # against gearmand 1.1.20 this client never returns (see the module docstring)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1:] == [b"FAIL"]


def test_a_64_byte_unique_is_kept_whole(geartrain):
    assert len(UNIQUE_64) == 64
    with connect(geartrain) as c, connect(geartrain) as w:
        handle = c.submit(T.SUBMIT_JOB_BG, b"f", UNIQUE_64, b"data")
        assert c.submit(T.SUBMIT_JOB_BG, b"f", UNIQUE_64, b"again") == handle  # coalesced
        c.send(T.GET_STATUS_UNIQUE, UNIQUE_64)
        assert c.expect(T.STATUS_RES_UNIQUE) == (UNIQUE_64, b"1", b"0", b"0", b"0", b"0")
        assert c.admin("show unique jobs") == [UNIQUE_64 + b"\n", b".\n"]
        w.send(T.CAN_DO, b"f")
        w.send(T.GRAB_JOB_UNIQ)
        assert w.expect(T.JOB_ASSIGN_UNIQ) == (handle, b"f", UNIQUE_64, b"data")


def test_an_epoch_job_wakes_a_sleeping_worker_when_its_time_comes(geartrain):
    with connect(geartrain) as c, connect(geartrain) as w:
        w.send(T.CAN_DO, b"later")
        w.send(T.PRE_SLEEP)
        when = int(time.time()) + 3
        c.send(T.SUBMIT_JOB_EPOCH, b"later", b"", str(when).encode(), b"on time")
        (handle,) = c.expect(T.JOB_CREATED)
        assert w.quiet(0.5) == b""  # not yet (gearmand 1.1.20: a NOOP now, and none at the time)
        w.expect(T.NOOP, timeout=10)
        assert time.time() >= when - 1
        w.send(T.GRAB_JOB)
        assert w.expect(T.JOB_ASSIGN) == (handle, b"later", b"on time")


@pytest.mark.parametrize("ptype", [T.WORK_DATA, T.WORK_WARNING, T.WORK_EXCEPTION, T.WORK_COMPLETE])
def test_a_result_sent_as_the_bare_handle_is_taken_as_empty(geartrain, ptype):
    with connect(geartrain) as c, connect(geartrain) as w:
        c.send(T.OPTION_REQ, b"exceptions")
        c.expect(T.OPTION_RES)
        w.send(T.CAN_DO, b"f")
        handle = c.submit(T.SUBMIT_JOB, b"f", b"", b"x")
        w.send(T.GRAB_JOB)
        assert w.expect(T.JOB_ASSIGN)[0] == handle
        w.send_raw(raw_packet(ptype, handle))  # gearmand: misframed, see the module docstring
        assert c.expect(ptype) == (handle, b"")
        if ptype in (T.WORK_DATA, T.WORK_WARNING):  # not final: the job is still the worker's
            w.send_raw(raw_packet(T.WORK_COMPLETE, handle))
            assert c.expect(T.WORK_COMPLETE) == (handle, b"")
        w.send(T.ECHO_REQ, b"alive")  # no ERROR before it: the worker goes on
        assert w.expect(T.ECHO_RES) == (b"alive",)


@pytest.mark.parametrize(("payload", "status"), [
    (b"", (b"0", b"0")),  # Perl's send_work_status with a numerator of 0: the bare handle
    (b"\x003", (b"3", b"0")),  # Perl's send_work_status drops the denominator
])
def test_a_work_status_short_of_its_numbers_reads_them_as_0(geartrain, payload, status):
    with connect(geartrain) as c, connect(geartrain) as w:
        w.send(T.CAN_DO, b"f")
        handle = c.submit(T.SUBMIT_JOB, b"f", b"", b"x")
        w.send(T.GRAB_JOB)
        w.expect(T.JOB_ASSIGN)
        w.send_raw(raw_packet(T.WORK_STATUS, handle + payload))
        assert c.expect(T.WORK_STATUS) == (handle, *status)
        c.send(T.GET_STATUS, handle)
        assert c.expect(T.STATUS_RES) == (handle, b"1", b"1", *status)
        w.send(T.WORK_COMPLETE, handle, b"done")
        assert c.expect(T.WORK_COMPLETE) == (handle, b"done")
