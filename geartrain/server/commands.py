"""Admin text commands run against the server's state (the formats are in protocol/admin.py).

``Admin.run(peer, line)`` is installed as ``State.text``; it answers on the same connection.
Commands are matched case-insensitively, as gearmand does.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..protocol import admin
from .jobs import DELAYED, QUEUED, RUNNING, Function, Job, Peer
from .state import State, atoi


class Admin:
    """Runs one admin line for one connection."""

    def __init__(self, state: State, *, version: str, verbose: Callable[[], str],
                 shutdown: Callable[[bool], None] | None = None) -> None:
        self.state = state
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
        }

    def run(self, peer: Peer, line: bytes) -> None:
        words = admin.split(line)
        if not words:
            self.state.send(peer, admin.err_unknown(b""))
            return
        command = self.commands.get(words[0].lower())
        if command is None:
            reply = admin.err_unknown(words[0])
        elif self.allowed is not None and not self.allowed(peer, words[0].lower()):
            reply = admin.ERR_PERMISSION
        else:
            reply = command(words)
        self.state.send(peer, reply)

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


def _unique_hash(job: Job) -> int:
    """gearmand's key in its unique table: 0 without a unique, the data's hash for "-"."""
    if not job.unique:
        return 0
    if job.unique == b"-":
        return admin.gearmand_hash(job.data) if job.data else 0
    return admin.gearmand_hash(job.unique)
