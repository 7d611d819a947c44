"""Replies on their way out: each peer's output list, and the lists of peers that have output.

The one path by which the job logic sends anything. A reply is appended to ``peer.out``; the first one
puts the peer on ``dirty`` (or, for a NOOP wake-up, on ``woken``, written first: the woken worker's
round trip is what a job waits on). The connection layer takes the lists once per loop turn
(``drain``) and writes each peer's output with one write (``take``). A ``Hold`` keeps the place of a
reply not known yet (JOB_CREATED waiting for the durable store, a grab waiting for a job): output is
written only up to the first unresolved Hold, so replies on one connection keep their order.
"""

from __future__ import annotations

from typing import Any

from .jobs import Job, Peer


class Hold:
    """A reply not yet known (JOB_CREATED waiting for a store commit, a grab waiting for a job) in a peer's output.

    The connection layer writes a peer's output up to the first unresolved Hold, so replies on one
    connection stay in order. A Hold of new background jobs (``batch`` set) stands for the replies
    to every job in ``jobs``, all of one group-commit batch, submitted in a row on this connection.
    """

    __slots__ = ("data", "batch", "jobs")

    def __init__(self) -> None:
        self.data: bytes | None = None
        self.batch: Any = None  # the group.Batch its jobs went in (None: one reply of another kind)
        self.jobs: list[Job] = []


class Outbox:
    """The peers with output this turn, and how output is added to a peer."""

    __slots__ = ("dirty", "woken")

    def __init__(self) -> None:
        self.dirty: list[Peer] = []  # peers with output to write
        self.woken: list[Peer] = []  # peers whose output begins with a NOOP wake-up: written before dirty

    def send(self, peer: Peer, data: bytes) -> None:
        """Queue DATA for PEER; written with the rest of this turn's output."""
        if peer.closed:
            return
        out = peer.out
        if not out:
            self.dirty.append(peer)
        out.append(data)

    def send_parts(self, peer: Peer, head: bytes, payload: bytes) -> None:
        """Queue a packet whose big PAYLOAD follows HEAD as a part of its own: the connection layer hands the
        parts to writelines instead of copying the payload into one string."""
        if not peer.closed:
            self.send(peer, head)
            peer.out.append(payload)
            peer.big = True

    def wake(self, peer: Peer, noop: bytes) -> None:
        """Queue the NOOP wake-up for PEER; if it is all PEER's output, PEER is written before the peers that
        are only dirty."""
        if peer.out or peer.closed:
            self.send(peer, noop)
        else:
            self.woken.append(peer)
            peer.out.append(noop)

    def hold(self, peer: Peer) -> Hold:
        """Keep the place of a reply not known yet in PEER's output; fill it with resolve()."""
        hold = Hold()
        if not peer.closed:
            if not peer.out:
                self.dirty.append(peer)
            peer.out.append(hold)
            peer.holds += 1
        return hold

    def resolve(self, peer: Peer, hold: Hold, data: bytes) -> None:
        """The reply HOLD kept a place for is DATA: PEER's output can be written past it."""
        if hold.data is None and not peer.closed:
            hold.data = data
            self.dirty.append(peer)

    def drain(self) -> list[Peer]:
        """The peers to write this turn, the woken first; both lists start over empty."""
        peers = self.woken + self.dirty if self.woken else self.dirty
        self.woken = []
        self.dirty = []
        return peers

    @staticmethod
    def take(peer: Peer) -> bytes:
        """Everything PEER may be sent now: its output up to the first reply still waiting (a Hold)."""
        out = peer.out
        if not out:
            return b""
        if not peer.holds:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            return data
        parts: list[bytes] = []
        n = 0
        for item in out:
            if type(item) is Hold:
                if item.data is None:
                    break
                parts.append(item.data)
                peer.holds -= 1
            else:
                parts.append(item)
            n += 1
        del out[:n]
        return b"".join(parts)
