"""libgearman's `gearadmin` against our server and against gearmand: every option it has."""

from __future__ import annotations

import re

import pytest

from geartrain.protocol import T

from .conftest import run
from .wire import connect, status_table

pytestmark = pytest.mark.interop


def admin(gearadmin_bin: str, server, *args: str) -> tuple[int, bytes, bytes]:
    out = run([gearadmin_bin, "-h", server.host, "-p", str(server.port), *args], timeout=15)
    return out.returncode, out.stdout, out.stderr


@pytest.fixture
def busy(any_server):
    """A worker (id "gw", functions g and h) and three queued jobs of g, one per priority."""
    w = connect(any_server)
    c = connect(any_server)
    w.send(T.SET_CLIENT_ID, b"gw")
    w.send(T.CAN_DO, b"g")
    w.send(T.CAN_DO, b"h")
    w.send(T.ECHO_REQ, b"sync")
    w.expect(T.ECHO_RES)
    handles = [c.submit(ptype, b"g", uniq, b"data")
               for ptype, uniq in ((T.SUBMIT_JOB_HIGH_BG, b"u-high"), (T.SUBMIT_JOB_BG, b"u-normal"),
                                   (T.SUBMIT_JOB_LOW_BG, b"u-low"))]
    yield any_server, w, c, handles
    w.close()
    c.close()


def test_status(busy, gearadmin_bin):
    server, *_ = busy
    rc, out, _ = admin(gearadmin_bin, server, "--status")
    assert rc == 0
    assert sorted(out.splitlines(keepends=True)) == [b".\n", b"g\t3\t0\t1\n", b"h\t0\t0\t1\n"]


def test_priority_status(busy, gearadmin_bin):
    server, *_ = busy
    rc, out, _ = admin(gearadmin_bin, server, "--priority-status")
    assert rc == 0
    assert sorted(out.splitlines(keepends=True)) == [b".\n", b"g\t1\t1\t1\t1\n", b"h\t0\t0\t0\t1\n"]


def test_workers(busy, gearadmin_bin):
    server, *_ = busy
    rc, out, _ = admin(gearadmin_bin, server, "--workers")
    assert rc == 0
    lines = out.splitlines()
    assert lines[-1] == b"."
    ours = [ln for ln in lines if b" gw :" in ln]
    assert len(ours) == 1 and re.fullmatch(rb"\d+ 127\.0\.0\.1 gw : (g h|h g)", ours[0]), lines
    # the client connection and gearadmin's own connection are listed too, with no functions
    assert sum(bool(re.fullmatch(rb"\d+ 127\.0\.0\.1 - :", ln)) for ln in lines) >= 2, lines


def test_show_jobs_and_unique_jobs(busy, gearadmin_bin):
    server, _, _, handles = busy
    rc, out, _ = admin(gearadmin_bin, server, "--show-jobs")
    assert rc == 0
    rows = sorted(out.splitlines()[:-1])
    assert rows == sorted(h + b"\t0\t0\t1" for h in handles)
    rc, out, _ = admin(gearadmin_bin, server, "--show-unique-jobs")
    assert rc == 0
    assert sorted(out.splitlines()) == [b".", b"u-high", b"u-low", b"u-normal"]


def test_cancel_job(busy, gearadmin_bin):
    server, w, c, handles = busy
    fg = c.submit(T.SUBMIT_JOB, b"g", b"", b"foreground")
    assert admin(gearadmin_bin, server, "--cancel-job", fg.decode())[:2] == (0, b"OK\n")
    assert c.expect(T.WORK_FAIL) == (fg,)  # the waiting client hears about it
    assert admin(gearadmin_bin, server, "--cancel-job", handles[0].decode())[:2] == (0, b"OK\n")
    rc, out, err = admin(gearadmin_bin, server, "--cancel-job", "H:nowhere:12345")
    assert (rc, out) == (0, b"") and b"UNKNOWN_JOB" in err
    # the two cancelled jobs are never handed out; the other two are, normal before low
    got = []
    for _ in range(3):
        w.send(T.GRAB_JOB)
        ptype, args = w.packet()
        got.append(args[0] if ptype == T.JOB_ASSIGN else ptype)
    assert got == [handles[1], handles[2], T.NO_JOB]


def test_create_and_drop_function(any_server, gearadmin_bin):
    assert admin(gearadmin_bin, any_server, "--create-function", "made")[:2] == (0, b"OK\n")
    with connect(any_server) as a:
        assert status_table(a) == {b"made": (0, 0, 0)}
        assert admin(gearadmin_bin, any_server, "--drop-function", "made")[:2] == (0, b"OK\n")
        assert status_table(a) == {}
        rc, out, err = admin(gearadmin_bin, any_server, "--drop-function", "made")
        assert (rc, out) == (0, b"") and b"function not found" in err
        w = connect(any_server)
        w.send(T.CAN_DO, b"held")
        w.send(T.ECHO_REQ, b"")
        w.expect(T.ECHO_RES)
        rc, out, err = admin(gearadmin_bin, any_server, "--drop-function", "held")
        assert (rc, out) == (0, b"") and b"still connected workers" in err
        w.close()


def test_getpid(any_server, gearadmin_bin):
    rc, out, _ = admin(gearadmin_bin, any_server, "--getpid")
    assert (rc, out) == (0, b"%d\n" % any_server.proc.pid)


def test_server_version(any_server, gearadmin_bin):
    rc, out, _ = admin(gearadmin_bin, any_server, "--server-version")
    assert rc == 0
    assert re.fullmatch(rb"[\w.+~-]*\d+\.\d+[\w.+~-]*\n", out), out  # one token holding a version number


def test_server_verbose(any_server, gearadmin_bin):
    rc, out, _ = admin(gearadmin_bin, any_server, "--server-verbose")
    assert rc == 0
    assert out in {b"%s\n" % level for level in
                   (b"FATAL", b"ALERT", b"CRITICAL", b"ERROR", b"WARNING", b"NOTICE", b"INFO", b"DEBUG")}, out
