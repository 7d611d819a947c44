"""A job submitted over HTTP: the one place where an HTTP request becomes a client of the job logic.

For the life of a ``POST /FUNCTION`` request, a ``Submission`` is a Peer of the State like a Gearman
client that submits one job, so HTTP shares every code path of the binary protocol (the ACL, unique
coalescing, priorities, the durable commit, a client leaving). Like `geartrain submit`, it asks for
exceptions (OPTION_REQ exceptions), so a worker's exception text comes back rather than a bare failure.

The state answers a peer with Gearman packets. ``PacketSink`` stands in for the peer's transport and
parses them back; the submission turns the replies it waits for into one ``Outcome``. Only this module
knows that replies are packets: a client session that matches replies without bytes can take
PacketSink's place here without touching the HTTP side.
"""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

from ..protocol.codec import Parser
from ..protocol.packets import RES, T
from .jobs import Peer
from .view import ServerView


class Outcome(NamedTuple):
    """How a submission ended: COMMAND is the Gearman reply that ended it (JOB_CREATED for a background job,
    WORK_COMPLETE, WORK_FAIL, WORK_EXCEPTION, or ERROR); DATA its result (WORK_DATA chunks joined before the
    WORK_COMPLETE data), the exception's text, or the ERROR's message; CODE the ERROR's code."""

    command: bytes
    handle: bytes
    data: bytes = b""
    code: bytes = b""


#: the replies that end a submission, by packet type
_ENDS = {T.WORK_COMPLETE: b"WORK_COMPLETE", T.WORK_FAIL: b"WORK_FAIL", T.WORK_EXCEPTION: b"WORK_EXCEPTION"}


class PacketSink:
    """Stands in for a Peer's transport: parses the Gearman replies the state writes to it."""

    __slots__ = ("submission", "parser")

    def __init__(self, submission: Submission) -> None:
        self.submission = submission
        self.parser = Parser(RES, text=False)

    def write(self, data: bytes) -> None:
        submission = self.submission
        http = submission.view.http
        if http is not None:
            http.relayed += len(data)
        for ptype, args in self.parser.feed(data):
            submission.on_packet(ptype, args)

    def writelines(self, parts: list[bytes]) -> None:
        self.write(b"".join(parts))

    def close(self) -> None:
        self.submission.close()

    def get_write_buffer_size(self) -> int:
        return 0


class Submission:
    """One HTTP request's Peer: ``allowed`` before its body is read, then ``submit`` and await the Outcome."""

    __slots__ = ("view", "peer", "rules", "cert_name", "paused", "background", "handle", "chunks", "future")

    def __init__(self, view: ServerView, host: str, fd: int = -1) -> None:
        self.view = view
        state = view.state
        acl = view.acl
        self.rules: Any = acl.rules_for(None, host) if acl is not None else None  # read by the ACL hooks
        self.cert_name: str | None = None  # no client certificates over HTTP
        self.paused = False  # read by the server's flush, as for a Gearman connection
        self.background = False
        self.handle = b""
        self.chunks: list[bytes] = []
        self.future: asyncio.Future[Outcome] | None = None
        peer = self.peer = state.connect(fd, host)
        peer.transport = PacketSink(self)
        peer.extra = self
        state.dispatch[T.OPTION_REQ](peer, (b"exceptions",))  # its OPTION_RES arrives before any submission

    def allowed(self, name: bytes) -> bool:
        """May this request submit jobs to NAME (the ACL's submit rule; a refusal is logged)?"""
        hook = self.view.state.acl
        return hook is None or hook(self.peer, "submit", name)

    def submit(self, name: bytes, unique: bytes, data: bytes, priority: int,
               background: bool) -> asyncio.Future[Outcome]:
        """Submit the job; the future is set by the reply that ends the submission."""
        self.background = background
        future = self.future = asyncio.get_running_loop().create_future()
        view = self.view
        view.state.submit(priority, background, self.peer, (name, unique, data))
        view.flush()
        return future

    def on_packet(self, ptype: int, args: tuple[bytes, ...]) -> None:
        """A Gearman reply the state sent to this request's Peer."""
        future = self.future
        if future is None or future.done():
            return
        if ptype == T.JOB_CREATED:
            self.handle = args[0]
            if self.background:
                future.set_result(Outcome(b"JOB_CREATED", args[0]))
        elif ptype == T.WORK_DATA and args[0] == self.handle:
            self.chunks.append(args[1])
        elif ptype in _ENDS and args[0] == self.handle:
            if ptype == T.WORK_COMPLETE:
                self.chunks.append(args[1])
                data = b"".join(self.chunks)
            else:
                data = args[1] if ptype == T.WORK_EXCEPTION else b""
            future.set_result(Outcome(_ENDS[ptype], self.handle, data))
        elif ptype == T.ERROR:
            future.set_result(Outcome(b"ERROR", self.handle, args[1], args[0]))

    def close(self) -> None:
        """The request is over (answered, or its client left): the Peer disconnects, and a foreground job
        nobody else waits for is dropped, as for a Gearman client that leaves."""
        peer = self.peer
        if not peer.closed:
            self.view.state.disconnect(peer)
            self.view.flush()
        future = self.future
        if future is not None and not future.done():
            future.cancel()


def as_peer(view: ServerView, host: str) -> Peer:
    """A stand-in Peer with HOST's ACL rules, for the permission hooks of requests that submit nothing."""
    peer = Peer(0, -1, host)
    acl = view.acl
    peer.extra = _Who(acl.rules_for(None, host) if acl is not None else None)
    return peer


class _Who:
    """What the permission hooks read of a connection: its ACL rules and certificate name."""

    __slots__ = ("rules", "cert_name")

    def __init__(self, rules: Any) -> None:
        self.rules = rules
        self.cert_name = None
