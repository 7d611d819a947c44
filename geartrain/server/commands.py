"""Admin text commands run against the server's state (the formats are in protocol/admin.py).

``Admin.run(peer, line)`` is installed as ``State.text``; it answers on the same connection.
Commands are matched case-insensitively, as gearmand does. Besides gearmand's own commands (and
``shutdown [graceful]``, which gearmand dropped), geartrain answers its own, so a tool in any language
can reach over the Gearman port what gearmand never had:

* ``health`` (``OK live``) and ``ready`` (``OK ready``, or ``ERR NOT_READY`` with the reasons:
  server/health.py, the same answer as ``GET /readyz``). ``ready`` is answered once its probe returns:
  a placeholder keeps its place in the connection's output meanwhile;
* ``result HANDLE|UNIQUE``: how a job stands, or how it ended if its outcome is kept: a listing of
  ``name<tab>value`` lines (state, handle, function, unique, tries, progress, ended, data in base64);
* ``policy FUNC`` shows a function's policy in effect (``OK <words>``), ``policy FUNC WORDS...``
  sets its own (server/policy.py), ``policy FUNC none`` drops it; ``policies`` lists them;
* ``failed [list [FUNC]]`` lists the failed-job registry, ``failed show ID`` one entry with each try,
  ``failed requeue ID|FUNC|all`` and ``failed discard ID|FUNC|all`` act on it (``OK <count>``).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterable

from ..protocol import admin
from .health import Health, Report
from .jobs import DELAYED, QUEUED, RUNNING, Function, Job, Peer
from .outbox import Hold
from .policy import PolicyError
from .policy import parse as policy_parse
from .state import State, atoi
from .store.base import FailedJob, Try


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
            b"result": self.result,
            b"policies": self.policies,
        }
        #: commands answered later: each is given the function that sends its reply
        self.later: dict[bytes, Callable[[list[bytes], Callable[[bytes], None]], None]] = {
            b"ready": self.ready,
            b"policy": self.stored(self.policy),
            b"failed": self.stored(self.failed),
        }

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
        elif self.allowed is not None and not self.allowed(peer, _permission(words)):
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

    # ------------------------------------------------------------------ geartrain's own: what outlives a job

    def result(self, words: list[bytes]) -> bytes:
        if len(words) != 2:
            return admin.err_args(words[0])
        state, job, kept = self.state.outcome(words[1])
        pairs: list[tuple[bytes, bytes]] = [(b"state", state.encode())]
        if job is not None:
            pairs += [(b"handle", job.handle), (b"function", job.function.name), (b"unique", job.unique),
                      (b"tries", b"%d" % (1 + len(job.history) if job.history else 1))]
            if job.state == RUNNING:
                pairs.append((b"progress", job.numerator + b"/" + job.denominator))
            if job.history:
                pairs.append((b"error", last_error(job.history[-1])))
        elif kept is not None:
            pairs += [(b"handle", kept.handle), (b"function", kept.function), (b"unique", kept.unique),
                      (b"tries", b"%d" % kept.tries), (b"ended", b"%.3f" % kept.ended),
                      (b"data", base64.b64encode(kept.data))]
        return admin.fields(pairs)

    def stored(self, command: Callable[[list[bytes]], bytes]) -> Callable[[list[bytes], Callable[[bytes], None]], None]:
        """COMMAND answered once what it changed is in the durable store (at once when it changed nothing, or with
        no durable store): an acknowledged change of a policy or of the failed-job registry survives a crash."""

        def run(words: list[bytes], answer: Callable[[bytes], None]) -> None:
            reply = command(words)
            committer = self.state.committer
            if committer is None or _permission(words) not in (b"policy", b"failed") or not reply.startswith(b"OK"):
                answer(reply)
                return
            committer.sync(lambda error: answer(reply if error is None else admin.err(
                b"QUEUE_ERROR", f"done, but not stored yet (the store is tried again): {error}")))

        return run

    def policy(self, words: list[bytes]) -> bytes:
        if len(words) < 2:
            return admin.err_args(words[0])
        life = self.state.life
        f = life.function(words[1])
        if len(words) == 2:
            effective = f.policy if f.policy is not None else life.default_policy
            return admin.ok_value(effective.text() or "default" if effective is not None else "none")
        text = b" ".join(words[2:]).decode(errors="replace")
        if text.lower() == "none":
            life.set_policy(f, None)
            return admin.OK
        try:
            life.set_policy(f, policy_parse(text, life.default_policy))
        except PolicyError as exc:
            return admin.err(b"INVALID_ARGUMENT", str(exc))
        return admin.OK

    def policies(self, words: list[bytes]) -> bytes:
        life = self.state.life
        lines = [(f.name, f.policy.text().encode()) for f in self.functions() if f.policy is not None]
        if life.default_policy is not None:
            lines.insert(0, (b"*", life.default_policy.text().encode()))
        return admin.rows(lines)

    def failed(self, words: list[bytes]) -> bytes:
        sub = words[1].lower() if len(words) > 1 else b"list"
        registry = self.state.life.failed_jobs
        if sub == b"list" and len(words) <= 3:
            chosen: Iterable[FailedJob] = registry.jobs.values()
            if len(words) == 3:
                chosen = [j for j in chosen if j.function == words[2]]
            return admin.rows(_failed_row(j) for j in chosen)
        if sub == b"show" and len(words) == 3 and words[2].isdigit():
            job = registry.jobs.get(int(words[2]))
            return admin.fields(_failed_fields(job)) if job is not None else admin.ERR_UNKNOWN_JOB
        if sub == b"requeue" and len(words) == 3:
            done, cut = self.state.requeue_failed(words[2])
            if cut and not done:
                return admin.err(b"INVALID_ARGUMENT", f"{cut} job(s) kept only part of their payload: not requeued")
            return admin.ok_value(done)
        if sub == b"discard" and len(words) == 3:
            return admin.ok_value(self.state.discard_failed(words[2]))
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


def _permission(words: list[bytes]) -> bytes:
    """The command word the ACL is asked about: ``policy`` and ``failed`` only when they change something."""
    command = words[0].lower()
    if command == b"policy" and len(words) <= 2:
        return b"policy show"
    if command == b"failed" and (len(words) == 1 or words[1].lower() in (b"list", b"show")):
        return b"failed list"
    return command


def last_error(attempt: Try) -> bytes:
    """How a try failed, in one line: ``exception: TEXT``, ``failed``, ``timed out: ...`` (also the HTTP API's)."""
    return attempt.how.encode() + (b": " + attempt.text if attempt.text else b"")


def _failed_row(job: FailedJob) -> list[bytes]:
    """``failed list``: ID, FUNCTION, UNIQUE, TRIES, FAILED_AT, SIZE, LAST_ERROR."""
    tries = Try.decode_all(job.history)
    last = last_error(tries[-1]) if tries else b""
    return [b"%d" % job.id, job.function, job.unique, b"%d" % len(tries), b"%.3f" % job.failed_at, b"%d" % job.size,
            last]


def _failed_fields(job: FailedJob) -> list[tuple[bytes, bytes]]:
    pairs = [(b"id", b"%d" % job.id), (b"handle", job.handle), (b"function", job.function), (b"unique", job.unique),
             (b"priority", b"%d" % job.priority), (b"background", b"1" if job.background else b"0"),
             (b"failed_at", b"%.3f" % job.failed_at), (b"size", b"%d" % job.size),
             (b"data", base64.b64encode(job.data))]
    for n, attempt in enumerate(Try.decode_all(job.history), 1):
        pairs.append((b"try", b"%d %.3f %.3f %s %s" % (n, attempt.started, attempt.ended,
                                                        attempt.worker.encode() or b"-", last_error(attempt))))
    return pairs


def _unique_hash(job: Job) -> int:
    """gearmand's key in its unique table: 0 without a unique, the data's hash for "-"."""
    if not job.unique:
        return 0
    if job.unique == b"-":
        return admin.gearmand_hash(job.data) if job.data else 0
    return admin.gearmand_hash(job.unique)
