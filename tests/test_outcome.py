"""geartrain.outcome reads the replies of the admin commands ``result`` and ``failed`` as the server writes them
(the server's own Admin run on a State driven without sockets)."""

from __future__ import annotations

import pytest

from geartrain.errors import ServerError
from geartrain.outcome import listing, parse_failed_list, parse_failed_show, parse_result
from geartrain.protocol.packets import T
from geartrain.server.commands import Admin
from geartrain.server.policy import parse
from tests.server.helpers import Harness


def admin(h: Harness, line: bytes) -> bytes:
    peer = h.peer()
    Admin(h.state, version="test", verbose=lambda: "INFO").run(peer, line)
    return h.raw(peer)


def run(h: Harness, worker, ptype: int, *args: bytes) -> bytes:
    kind, (handle, *_) = h.grab(worker)
    h.send(worker, ptype, handle, *args)
    return handle


def test_a_job_as_it_stands_and_as_it_ended():
    h = Harness()
    h.state.life.set_policy(h.state.function(b"f"), parse("tries=2 delay=5 keep=60"))
    c, w = h.peer(), h.worker(b"f")
    handle = h.submit(c, ptype=T.SUBMIT_JOB_BG, unique=b"u")
    got = parse_result(admin(h, b"result u"), "s:1")
    assert (got.state, got.handle, got.function, got.unique, got.tries, got.done, got.outcome, got.server) == \
        ("queued", handle, b"f", b"u", 1, False, None, "s:1")
    h.grab(w)
    h.send(w, T.WORK_STATUS, handle, b"2", b"5")
    assert parse_result(admin(h, b"result " + handle)).progress == (2, 5)
    h.send(w, T.WORK_EXCEPTION, handle, b"IOError:\ttry\nagain")
    got = parse_result(admin(h, b"result " + handle))
    assert (got.state, got.tries, got.error, got.done) == ("waiting", 2, "exception: IOError: try again", False)
    h.tick(5)
    run(h, w, T.WORK_COMPLETE, b"\x00bytes\xff\n")
    got = parse_result(admin(h, b"result " + handle))
    assert (got.state, got.data, got.error, got.tries, got.ok) == ("complete", b"\x00bytes\xff\n", None, 2, True)
    assert got.ended == pytest.approx(h.state.now, abs=0.001)
    raised = h.submit(c, ptype=T.SUBMIT_JOB_BG)
    run(h, w, T.WORK_EXCEPTION, b"first")
    h.tick(5)
    run(h, w, T.WORK_EXCEPTION, b"KeyError: 'k'")
    got = parse_result(admin(h, b"result " + raised))
    assert (got.state, got.data, got.error, got.outcome) == ("exception", b"", "KeyError: 'k'", "exception")
    h.state.life.set_policy(h.state.function(b"g"), parse("keep=60"))
    failed = h.submit(c, name=b"g", ptype=T.SUBMIT_JOB_BG)
    run(h, h.worker(b"g"), T.WORK_FAIL)
    assert (parse_result(admin(h, b"result " + failed)).state, parse_result(admin(h, b"result " + failed)).error) \
        == ("failed", "job failed")
    assert parse_result(admin(h, b"result nothing")).state == "unknown"


def test_the_registry_as_listed_and_shown():
    h = Harness()
    h.state.life.set_policy(h.state.function(b"f"), parse("tries=2 delay=0"))
    c, w = h.peer(), h.worker(b"f")
    handle = h.submit(c, ptype=T.SUBMIT_JOB_BG, unique=b"u", data=b"payload")
    run(h, w, T.WORK_EXCEPTION, b"one")
    h.tick(0)
    h.grab(w)
    h.state.disconnect(w)  # the second try: its worker is lost
    (entry,) = parse_failed_list(admin(h, b"failed list"), "s:1")
    assert (entry.id, entry.function, entry.unique, entry.tries, entry.size, entry.error, entry.server) == \
        (1, b"f", b"u", 2, 7, "worker lost: worker disconnected", "s:1")
    shown = parse_failed_show(admin(h, b"failed show 1"))
    assert (shown.handle, shown.data, shown.background, shown.priority, shown.cut) == (handle, b"payload", True, 1,
                                                                                       False)
    assert [(a.number, a.error) for a in shown.attempts] == [(1, "exception: one"),
                                                             (2, "worker lost: worker disconnected")]
    assert all(a.worker.startswith("127.0.0.1 fd ") and a.ended >= a.started for a in shown.attempts)
    assert parse_failed_list(admin(h, b"failed list other")) == []


def test_an_err_reply_raises():
    with pytest.raises(ServerError, match="UNKNOWN_COMMAND: s:1: Unknown server commandresult"):
        listing(b"ERR UNKNOWN_COMMAND Unknown+server+commandresult\r\n", "s:1")
