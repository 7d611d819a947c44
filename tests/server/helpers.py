"""Drive server/state.py without sockets: fake connections, send packets, read what each peer got."""

from __future__ import annotations

from geartrain.protocol.codec import Parser
from geartrain.protocol.packets import RES, T
from geartrain.server.jobs import NEW, STATE_NAMES, Job, Peer
from geartrain.server.lifecycle import TRANSITIONS
from geartrain.server.state import State


class Harness:
    """A State plus named peers; ``send(peer, ptype, *args)`` dispatches one packet."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("handle_prefix", b"H:test")
        kwargs.setdefault("now", 1_000_000.0)
        self.notices: list[str] = []
        kwargs.setdefault("notice", lambda msg, **fields: self.notices.append(msg))
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


#: every change of job.state the lifecycle's table allows: (from, to)
ALLOWED_CHANGES = {(a, b) for before, after in TRANSITIONS.values() for a in before for b in after}


class CheckedJob(Job):
    """A Job whose every change of state must be one the lifecycle's table (TRANSITIONS) allows."""

    __slots__ = ("_state",)

    @property  # type: ignore[override]
    def state(self) -> int:
        return self._state

    @state.setter
    def state(self, new: int) -> None:
        old = getattr(self, "_state", NEW)
        if old != new:
            assert (old, new) in ALLOWED_CHANGES, f"{self.handle!r}: {STATE_NAMES[old]} -> {STATE_NAMES[new]}"
        self._state = new


def check_transitions(state: State) -> list[tuple[str, int, int]]:
    """Make STATE's lifecycle check every transition against TRANSITIONS: the job's state before it must be one
    the transition starts from, and after it one it ends in; every other change of state, one the table allows.
    Returns the list of (transition, from, to) it saw."""
    life = state.life
    life.job_class = CheckedJob
    seen: list[tuple[str, int, int]] = []

    def wrap(name: str, method):
        before_ok, after_ok = TRANSITIONS[name]

        def checked(job, *args, **kwargs):
            before = job.state
            assert before in before_ok, f"{name} of a {STATE_NAMES[before]} job"
            result = method(job, *args, **kwargs)
            if result is False and job.state == before:
                return result  # the transition declined (retry: no tries left), the job is as it was
            assert job.state in after_ok, f"{name} left the job {STATE_NAMES[job.state]}"
            seen.append((name, before, job.state))
            return result
        return checked

    for name in TRANSITIONS:
        if name in ("start_next", "release"):
            continue  # they find the job themselves: checked by CheckedJob
        setattr(life, name, wrap(name, getattr(life, name)))
    return seen
