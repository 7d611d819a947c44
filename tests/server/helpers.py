"""Drive server/state.py without sockets: fake connections, send packets, read what each peer got."""

from __future__ import annotations

from geartrain.protocol.codec import Parser
from geartrain.protocol.packets import RES, T
from geartrain.server.jobs import Peer
from geartrain.server.state import State


class Harness:
    """A State plus named peers; ``send(peer, ptype, *args)`` dispatches one packet."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("handle_prefix", b"H:test")
        kwargs.setdefault("now", 1_000_000.0)
        self.notices: list[str] = []
        kwargs.setdefault("notice", self.notices.append)
        self.state = State(**kwargs)  # type: ignore[arg-type]
        self.fd = 10

    def peer(self) -> Peer:
        self.fd += 1
        return self.state.connect(self.fd, "127.0.0.1")

    def send(self, peer: Peer, ptype: int, *args: bytes) -> None:
        self.state.dispatch[ptype](peer, tuple(args))

    def raw(self, peer: Peer) -> bytes:
        """Everything written to PEER since the last call."""
        return self.state.take_output(peer)

    def got(self, peer: Peer) -> list[tuple[str, tuple[bytes, ...]]]:
        """The packets written to PEER since the last call, as (name, args)."""
        events = Parser(RES, text=False).feed(self.raw(peer))
        return [(T(t).name, a) for t, a in events]

    def names(self, peer: Peer) -> list[str]:
        return [name for name, _ in self.got(peer)]

    def submit(self, client: Peer, name: bytes = b"f", data: bytes = b"x", unique: bytes = b"",
               ptype: int = T.SUBMIT_JOB) -> bytes:
        """Submit and return the handle from JOB_CREATED."""
        self.send(client, ptype, name, unique, data)
        got = self.got(client)
        assert got and got[-1][0] == "JOB_CREATED", got
        return got[-1][1][0]

    def worker(self, *names: bytes) -> Peer:
        w = self.peer()
        for name in names:
            self.send(w, T.CAN_DO, name)
        return w

    def grab(self, worker: Peer, ptype: int = T.GRAB_JOB) -> tuple[str, tuple[bytes, ...]]:
        self.send(worker, ptype)
        got = self.got(worker)
        assert len(got) == 1, got
        return got[0]

    def tick(self, seconds: float) -> None:
        self.state.tick(self.state.now + seconds)
