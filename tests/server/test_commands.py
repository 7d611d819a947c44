"""Admin commands run against the state: replies as gearmand 1.1.20 gives them."""

from __future__ import annotations

import os

from geartrain.protocol.packets import T
from geartrain.server.commands import Admin

from .helpers import Harness


def _admin(h: Harness, **kwargs) -> Admin:
    a = Admin(h.state, version="geartrain-test", verbose=lambda: "INFO", **kwargs)
    h.state.text = a.run
    return a


def _ask(h: Harness, line: bytes) -> bytes:
    p = h.peer()
    h.send(p, 0, line)
    out = h.raw(p)
    h.state.disconnect(p)
    return out


def test_status_and_prioritystatus():
    h = Harness()
    _admin(h)
    c = h.peer()
    w = h.worker(b"f1", b"f1", b"f2")
    h.submit(c, b"f1", ptype=T.SUBMIT_JOB_HIGH)
    h.submit(c, b"f1", ptype=T.SUBMIT_JOB_LOW_BG)
    h.submit(c, b"f2", ptype=T.SUBMIT_JOB_BG)
    h.grab(w)
    assert _ask(h, b"status") == b"f2\t1\t0\t1\nf1\t2\t1\t2\n.\n"
    assert _ask(h, b"STATUS") == _ask(h, b"status")
    assert _ask(h, b"prioritystatus") == b"f2\t0\t1\t0\t1\nf1\t0\t0\t1\t2\n.\n"


def test_workers_lists_every_connection_newest_first():
    h = Harness()
    _admin(h)
    w = h.worker(b"a", b"b")
    h.send(w, T.SET_CLIENT_ID, b"me")
    c = h.peer()
    p = h.peer()
    h.send(p, 0, b"workers")
    assert h.raw(p) == (b"%d 127.0.0.1 - :\n%d 127.0.0.1 - :\n%d 127.0.0.1 me : b a\n.\n" % (p.fd, c.fd, w.fd))


def test_show_jobs_and_unique_jobs():
    h = Harness()
    _admin(h)
    c = h.peer()
    a = h.submit(c, unique=b"u1")
    b = h.submit(c, ptype=T.SUBMIT_JOB_BG)
    jobs = _ask(h, b"show jobs")
    assert set(jobs.split(b"\n")) == {a + b"\t0\t0\t0", b + b"\t0\t0\t1", b".", b""}
    assert sorted(_ask(h, b"show unique jobs").split(b"\n")) == [b"", b"", b".", b"u1"]
    assert _ask(h, b"show nothing") == b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n"
    assert _ask(h, b"show") == b"ERR UNKNOWN_COMMAND Unknown+server+commandshow\r\n"


def test_maxqueue_cancel_create_drop():
    h = Harness()
    _admin(h)
    c = h.peer()
    assert _ask(h, b"maxqueue") == (b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+"
                                    b"command+maxqueue\r\n")
    assert _ask(h, b"maxqueue nosuch 3") == b"OK\r\n"
    assert _ask(h, b"create function f") == b"OK\r\n"
    assert _ask(h, b"maxqueue f 1") == b"OK\r\n"
    assert h.state.functions[b"f"].maxqueue == [1, 1, 1]
    assert _ask(h, b"maxqueue f 5 0 -3") == b"OK\r\n"
    assert h.state.functions[b"f"].maxqueue == [5, 0, 0]
    a = h.submit(c)
    assert _ask(h, b"cancel job " + a) == b"OK\r\n"
    assert h.got(c) == [("WORK_FAIL", (a,))]
    assert _ask(h, b"cancel job " + a) == b"ERR UNKNOWN_JOB\r\n"
    assert _ask(h, b"cancel job") == b"ERR UNKNOWN_COMMAND Unknown+server+commandcancel\r\n"
    assert _ask(h, b"drop function f") == b"OK\r\n"
    assert _ask(h, b"drop function f") == b"ERR function not found\r\n"
    h.worker(b"g")
    assert _ask(h, b"drop function g") == b"ERR there are still connected workers or executing clients\r\n"


def test_values_and_unknown():
    h = Harness()
    stops = []
    _admin(h, shutdown=stops.append)
    assert _ask(h, b"getpid") == b"OK %d\n" % os.getpid()
    assert _ask(h, b"verbose") == b"OK INFO\n"
    assert _ask(h, b"version") == b"OK geartrain-test\n"
    assert _ask(h, b"foo bar") == b"ERR UNKNOWN_COMMAND Unknown+server+commandfoo\r\n"
    assert _ask(h, b"") == b"ERR UNKNOWN_COMMAND Unknown+server+command\r\n"
    assert _ask(h, b"shutdown graceful") == b"OK\r\n"
    assert _ask(h, b"shutdown") == b"OK\r\n"
    assert _ask(h, b"shutdown now") == (b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+"
                                        b"command+shutdown\r\n")
    assert stops == [True, False]


def test_admin_acl_hook():
    h = Harness()
    a = _admin(h)
    a.allowed = lambda peer, command: command != b"shutdown"
    assert _ask(h, b"shutdown").startswith(b"ERR PERMISSION_DENIED")
    assert _ask(h, b"status") == b".\n"
