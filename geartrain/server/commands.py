"""Admin text commands run against the server's state (the formats are in protocol/admin.py).

``Admin.run(peer, line)`` is installed as ``State.text``; it answers on the same connection.
Commands are matched case-insensitively, as gearmand does. Besides gearmand's, ``shutdown [graceful]``
and, for tools that speak only Gearman, ``health`` (``OK live``) and ``ready`` (``OK ready``, or
``ERR NOT_READY`` with the reasons: server/health.py, the same answer as ``GET /readyz``). ``ready`` is
answered once its probe returns: a placeholder keeps its place in the connection's output meanwhile.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..protocol import admin
from .health import Health, Report
from .jobs import DELAYED, QUEUED, RUNNING, Function, Job, Peer
from .outbox import Hold
from .state import State, atoi


class Admin:
    """Runs one admin line for one connection."""

    def __init__(self, state: State, *, version: str, verbose: Callable[[], str],
                 shutdown: Callable[[bool], None] | None = None, health: Health | None = None,
                 flush: Callable[[], None] | None = None) -> None:
        self.state = state
        self.health = health
        self.flush = flush  # writes the output of a reply that came later (a `ready` probe's)
        self.version = version
        self.verbose = verbose
        self.shutdown = shutdown
        self.hash_buckets = 991  # gearmand's --hashtable-buckets default, for listing jobs in its order
        #: ACL hook: allowed(peer, command) -> bool; None allows everything
        self.allowed: Callable[[Peer, bytes], bool] | None = None
        self.commands: dict[bytes, Callable[[list[bytes]], bytes]] = {
            b"status": self.status,
            b"workers": self.workers,
            b"prioritystatus": self.priority_status,
            b"maxqueue": self.maxqueue,
            b"cancel": self.cancel,
            b"show": self.show,
            b"create": self.create,
            b"drop": self.drop,
            b"getpid": lambda words: admin.ok_value(os.getpid()),
            b"verbose": lambda words: admin.ok_value(self.verbose()),
            b"version": lambda words: admin.ok_value(self.version),
            b"shutdown": self.do_shutdown,
            b"health": lambda words: admin.ok_value("live"),
        }
        #: commands answered later: each is given the function that sends its reply
        self.later: dict[bytes, Callable[[list[bytes], Callable[[bytes], None]], None]] = {b"ready": self.ready}

    def run(self, peer: Peer, line: bytes) -> None:
        words = admin.split(line)
        if not words:
            self.state.send(peer, admin.err_unknown(b""))
            return
        name = words[0].lower()
        command = self.commands.get(name)
        later = self.later.get(name) if command is None else None
        if command is None and later is None:
            reply = admin.err_unknown(words[0])
        elif self.allowed is not None and not self.allowed(peer, name):
            reply = admin.ERR_PERMISSION
        elif later is not None:
            hold = self.state.outbox.hold(peer)
            later(words, lambda reply: self.answer(peer, hold, reply))
            return
        else:
            assert command is not None
            reply = command(words)
        self.state.send(peer, reply)

    def answer(self, peer: Peer, hold: Hold, reply: bytes) -> None:
        """The reply of a command answered later, in the place it kept."""
        self.state.outbox.resolve(peer, hold, reply)
        if self.flush is not None:
            self.flush()

    # ------------------------------------------------------------------ health

    def ready(self, words: list[bytes], answer: Callable[[bytes], None]) -> None:
        if self.health is None:
            answer(admin.ok_value("ready"))
            return
        self.health.ready_soon(lambda report: answer(ready_reply(report)))

    # ------------------------------------------------------------------ listings

    def functions(self) -> list[Function]:
        """Functions in gearmand's order: by its hash bucket, newest first within a bucket."""
        funcs = list(self.state.functions.values())
        order = sorted(range(len(funcs)), key=lambda i: (funcs[i].bucket, -i))
        return [funcs[i] for i in order]

    def jobs(self) -> list[Job]:
        return [job for job in self.state.jobs.values() if job.state in (QUEUED, RUNNING, DELAYED)]

    def status(self, words: list[bytes]) -> bytes:
        return admin.status((f.name, f.total, f.running, f.workers) for f in self.functions())

    def priority_status(self, words: list[bytes]) -> bytes:
        rows = []
        for f in self.functions():
            q, d = f.queued, f.delayed
            rows.append((f.name, q[0] + d[0], q[1] + d[1], q[2] + d[2], f.workers))
        return admin.priority_status(rows)

    def workers(self, words: list[bytes]) -> bytes:
        # newest connection first, each one's functions newest first (as gearmand's linked lists)
        rows = []
        for peer in reversed(self.state.peers.values()):
            functions = [f.name for f in reversed(peer.as_worker.abilities)]
            rows.append((peer.fd, peer.host.encode(), peer.client_id, functions))
        return admin.workers(rows)

    def show(self, words: list[bytes]) -> bytes:
        if len(words) < 2:
            return admin.err_unknown(words[0])
        if len(words) == 2 and words[1].lower() == b"jobs":
            jobs = admin.gearmand_order(self.jobs(), lambda job: admin.gearmand_hash(job.handle),
                                        self.hash_buckets)
            return admin.show_jobs((job.handle, job.retries, 0, 1 if job.background else 0) for job in jobs)
        if len(words) == 3 and words[1].lower() == b"unique" and words[2].lower() == b"jobs":
            jobs = admin.gearmand_order(self.jobs(), _unique_hash, self.hash_buckets)
            return admin.show_unique_jobs(job.unique for job in jobs)
        return admin.ERR_UNKNOWN_SHOW

    # ------------------------------------------------------------------ changes

    def maxqueue(self, words: list[bytes]) -> bytes:
        if len(words) < 2:
            return admin.err_args(words[0])
        limits = []
        for i in range(3):
            if len(words) > i + 2:
                limits.append(max(atoi(words[i + 2]), 0))
            else:
                limits.append(0)
        if len(words) <= 3:
            limits = [limits[0]] * 3
        f = self.state.functions.get(words[1])
        if f is not None:
            f.maxqueue = limits
        return admin.OK

    def cancel(self, words: list[bytes]) -> bytes:
        if len(words) < 3:
            return admin.err_unknown(words[0])
        if len(words) != 3 or words[1].lower() != b"job":
            return admin.ERR_INTERNAL
        return admin.OK if self.state.cancel(words[2]) else admin.ERR_UNKNOWN_JOB

    def create(self, words: list[bytes]) -> bytes:
        if len(words) == 3 and words[1].lower() == b"function":
            self.state.function(words[2])
            return admin.OK
        return admin.err_args(words[0])

    def drop(self, words: list[bytes]) -> bytes:
        if len(words) == 3 and words[1].lower() == b"function":
            result = self.state.drop_function(words[2])
            if result == "ok":
                return admin.OK
            return admin.ERR_DROP_BUSY if result == "busy" else admin.ERR_DROP_MISSING
        return admin.err_args(words[0])

    def do_shutdown(self, words: list[bytes]) -> bytes:
        if len(words) == 1:
            graceful = False
        elif len(words) == 2 and words[1].lower() == b"graceful":
            graceful = True
        else:
            return admin.err_args(words[0])
        if self.shutdown is not None:
            self.shutdown(graceful)
        return admin.OK


def ready_reply(report: Report) -> bytes:
    """``OK ready\n``, or ``ERR NOT_READY reason;+reason\r\n``."""
    if report.ok:
        return admin.ok_value("ready")
    return admin.err(b"NOT_READY", "; ".join(report.reasons))


def _unique_hash(job: Job) -> int:
    """gearmand's key in its unique table: 0 without a unique, the data's hash for "-"."""
    if not job.unique:
        return 0
    if job.unique == b"-":
        return admin.gearmand_hash(job.data) if job.data else 0
    return admin.gearmand_hash(job.unique)
