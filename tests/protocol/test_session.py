"""The client session (protocol/session.py) driven by packets alone, no sockets."""

from __future__ import annotations

import gc

from geartrain.protocol.packets import T
from geartrain.protocol.session import ClientSession


class Request:
    """Records what the session tells it; watches its job unless background."""

    def __init__(self, background: bool = False) -> None:
        self.background = background
        self.got: list[tuple] = []

    def on_created(self, handle):
        self.got.append(("created", handle))
        return None if self.background else self

    def on_reply(self, ptype, args):
        self.got.append(("reply", T(ptype).name, args))

    def on_error(self, code, text):
        self.got.append(("error", code, text))

    def on_work(self, ptype, args):
        self.got.append(("work", T(ptype).name, args[1:]))
        return ptype in (T.WORK_FAIL, T.WORK_EXCEPTION, T.WORK_COMPLETE)

    def on_complete(self, data):
        self.got.append(("complete", data))


def test_replies_in_order_and_work_by_handle():
    strays = []
    s = ClientSession(lambda ptype, args: strays.append(T(ptype).name))
    fg, bg, refused, status, other = Request(), Request(True), Request(), Request(), Request()
    for r in (fg, bg, refused, status, other):
        s.expect(r)
    s.receive(T.JOB_CREATED, (b"H:1",))
    s.receive(T.JOB_CREATED, (b"H:2",))
    s.receive(T.ERROR, (b"QUEUE_ERROR", b"full"))
    s.receive(T.STATUS_RES, (b"H:9", b"0", b"0", b"0", b"0"))
    s.receive(T.JOB_CREATED, (b"H:1",))  # coalesced with fg's job
    s.receive(T.WORK_STATUS, (b"H:1", b"1", b"2"))
    s.receive(T.WORK_FAIL, (b"H:1\0",))  # gearmand's trailing NUL
    s.receive(T.WORK_COMPLETE, (b"H:1", b"late"))  # nobody watches it any more
    s.receive(T.NOOP, ())
    assert fg.got == [("created", b"H:1"), ("work", "WORK_STATUS", (b"1", b"2")), ("work", "WORK_FAIL", ())]
    assert other.got == fg.got[:1] + fg.got[1:]
    assert bg.got == [("created", b"H:2")]
    assert refused.got == [("error", b"QUEUE_ERROR", b"full")]
    assert status.got == [("reply", "STATUS_RES", (b"H:9", b"0", b"0", b"0", b"0"))]
    assert strays == ["WORK_COMPLETE", "NOOP"] and not s.pending and not s.jobs


def test_close_hands_back_what_was_waiting():
    s = ClientSession()
    first, second, unanswered = Request(), Request(), Request()
    s.expect(first)
    s.expect(second)
    s.receive(T.JOB_CREATED, (b"H:1",))
    s.receive(T.WORK_COMPLETE, (b"H:1", b"done"))
    s.receive(T.JOB_CREATED, (b"H:2",))
    s.expect(unanswered)
    assert s.close() == ([unanswered], [second]) and not s.pending and not s.jobs
    assert first.got == [("created", b"H:1"), ("complete", b"done")]


def test_weak_sessions_let_dropped_requests_go():
    s = ClientSession(weak=True)
    for i in range(200):
        s.expect(Request())
        s.receive(T.JOB_CREATED, (b"H:%d" % i,))
    gc.collect()
    assert sum(len(w) for w in s.jobs.values()) == 0 and len(s.jobs) <= 128
