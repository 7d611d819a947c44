"""A job submitted over HTTP: the one place where an HTTP request becomes a client of the job logic.

For the life of a ``POST /FUNCTION`` request, a ``Submission`` is a Peer of the State like a Gearman
client that submits one job, so HTTP shares every code path of the binary protocol (the ACL, unique
coalescing, priorities, the durable commit, a client leaving). Like `geartrain submit`, it asks for
exceptions (OPTION_REQ exceptions), so a worker's exception text comes back rather than a bare failure.

The state answers a peer with Gearman packets. ``PacketSink`` stands in for the peer's transport and
parses them back, and a ``ClientSession`` (protocol/session.py, the one that geartrain's AsyncClient and
the python-gearman compatible client use) hands each to the request it answers: the submission, which
turns them into one ``Outcome``.
"""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

from ..protocol.codec import Parser
from ..protocol.packets import RES, T
from ..protocol.session import ClientSession
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


class _OptionSet:
    """The request OPTION_REQ exceptions: its OPTION_RES needs nothing done."""

    @staticmethod
    def on_reply(ptype: int, args: tuple) -> None:
        return None

    @staticmethod
    def on_error(code: bytes, text: bytes) -> None:
        return None


class PacketSink:
    """Stands in for a Peer's transport: parses the Gearman replies the state writes to it."""

    __slots__ = ("submission", "parser", "session")

    def __init__(self, submission: Submission) -> None:
        self.submission = submission
        self.parser = Parser(RES, text=False)
        self.session = ClientSession()

    def write(self, data: bytes) -> None:
        http = self.submission.view.http
        if http is not None:
            http.relayed += len(data)
        receive = self.session.receive
        for ptype, args in self.parser.feed(data):
            receive(ptype, args)

    def writelines(self, parts: list[bytes]) -> None:
        self.write(b"".join(parts))

    def close(self) -> None:
        self.submission.close()

    def get_write_buffer_size(self) -> int:
        return 0


class Submission:
    """One HTTP request's Peer: ``allowed`` before its body is read, then ``submit`` and await the Outcome."""

    __slots__ = ("view", "peer", "sink", "rules", "cert_name", "paused", "background", "handle", "chunks", "future")

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
        sink = self.sink = peer.transport = PacketSink(self)
        peer.extra = self
        sink.session.expect(_OptionSet)
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
        self.sink.session.expect(self)
        view.state.submit(priority, background, self.peer, (name, unique, data))
        view.flush()
        return future

    # the replies the session hands this request (protocol/session.py)

    def _end(self, outcome: Outcome) -> None:
        future = self.future
        if future is not None and not future.done():
            future.set_result(outcome)

    def on_created(self, handle: bytes) -> Submission | None:
        self.handle = handle
        if self.background:
            self._end(Outcome(b"JOB_CREATED", handle))
            return None
        return self

    def on_error(self, code: bytes, text: bytes) -> None:
        self._end(Outcome(b"ERROR", self.handle, text, code))

    def on_complete(self, data: bytes) -> None:
        self.chunks.append(data)
        self._end(Outcome(b"WORK_COMPLETE", self.handle, b"".join(self.chunks)))

    def on_work(self, ptype: int, args: tuple[bytes, ...]) -> bool:
        if ptype == T.WORK_DATA:
            self.chunks.append(args[1])
            return False
        if ptype == T.WORK_FAIL:
            self._end(Outcome(b"WORK_FAIL", self.handle))
        elif ptype == T.WORK_EXCEPTION:
            self._end(Outcome(b"WORK_EXCEPTION", self.handle, args[1]))
        elif ptype == T.WORK_COMPLETE:
            self.on_complete(args[1])
        else:
            return False  # WORK_STATUS, WORK_WARNING: the job goes on
        return True

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
