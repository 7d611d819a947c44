"""The job server's logic: jobs, queues, workers and wake-ups, as plain objects with no I/O.

Driven by ``State.dispatch[ptype](peer, args)`` for each parsed packet, ``State.tick(now)`` for
timers (epoch jobs, CAN_DO_TIMEOUT, cron schedules) and ``State.connect/disconnect`` for
connections. Replies are appended to ``peer.out`` (bytes built with codec.pack_res) and the peer
is put on ``State.dirty``; the connection layer writes each dirty peer's output with one write.
There is no asyncio, no socket and no clock in here: the caller sets ``State.now`` (epoch seconds).

This module is the facade: State's records and indexes, the dispatch table, output plumbing,
status queries, disconnects and admin operations. What each packet does lives in its parts,
mixed into State: ``submitting.py`` (SUBMIT_JOB*, coalescing, the store commit), ``workers.py``
(CAN_DO, sleeping and waking, GRAB_JOB*), ``results.py`` (WORK_*, how jobs end or come back) and
``timers.py`` (epoch jobs, CAN_DO_TIMEOUT, cron schedules).

Cost per submit, grab and result is O(1) in the queue depth: one deque per (function, priority),
lazy deletion for cancelled or abandoned jobs, a heap for epoch jobs and for timeouts.
"""

from __future__ import annotations

import itertools
import socket
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any

from ..protocol.codec import error_packet, pack_res
from ..protocol.packets import HIGH, LOW, MAX_HANDLE_SIZE, MAX_TYPE, MAX_UNIQUE_SIZE, NORMAL, SUBMIT_KINDS, ErrorCode, T
from .jobs import DELAYED, DONE, QUEUED, RUNNING, Function, Hold, Job, Peer
from .replies import (
    COMPLETED,
    EXCEPTION,
    FAILED,
    HANDLE_TOO_LARGE,
    JOB_ASSIGN,
    JOB_ASSIGN_ALL,
    JOB_ASSIGN_UNIQ,
    NOT_EXPECTED,
    UNIQUE_TOO_LARGE,
    UNKNOWN_OPTION,
    atoi,
    compact_queue,
)
from .results import Results
from .schedule import Cron, CronError
from .submitting import Submitting
from .timers import Schedule, Timers
from .workers import Workers


def default_handle_prefix() -> bytes:
    """gearmand's default: ``H:<hostname>``."""
    return b"H:" + socket.gethostname().encode(errors="replace")


class State(Submitting, Workers, Results, Timers):
    """Every job, function and connection of one server, and what to do with each packet.

    The packet handlers live in its parts: submitting.py, workers.py, results.py and timers.py."""

    def __init__(
        self,
        *,
        handle_prefix: bytes | None = None,
        job_retries: int = 0,
        worker_wakeup: int = 1,
        exceptions: bool = False,
        committer: Any = None,
        notice: Callable[[str], None] | None = None,
        now: float = 0.0,
        defer_no_job: bool = False,
        grab_wait: float = 0.0,
        wake_timeout: float = 0.0,
    ) -> None:
        self.prefix = (handle_prefix if handle_prefix is not None else default_handle_prefix()) + b":"
        self.job_retries = job_retries  # <= 0: unlimited (gearmand 1.1.20's default 0)
        self.worker_wakeup = worker_wakeup  # sleepers woken per queued job; 0 = all of them
        self.exceptions_default = exceptions
        self.committer = committer  # group.GroupCommit for a durable store, None for memory
        self.notice = notice or (lambda msg: None)  # log line for rare events (drops, timeouts)
        self.now = now
        #: a grab that finds no job waits up to grab_wait seconds (at least to the end of the loop turn) for
        #: one before it gets NO_JOB (Workers.retry_grabs, called by the server's flush and poll)
        self.defer_no_job = defer_no_job
        self.grab_wait = grab_wait
        #: a worker woken for a function that has not grabbed within wake_timeout seconds passes the wake-up on
        #: to another sleeper (0: never), so a worker that never reads cannot hold a job back (Timers.tick)
        self.wake_timeout = wake_timeout
        #: the deferred grabs: answer kind, worker, the place of its reply, when its wait is over
        self.grabs: list[tuple[int, Peer, Hold, float]] = []
        #: jobs queued this turn without a NOOP, per function, because a waiting grab can take them
        self.unwoken: dict[Function, int] = {}
        self.functions: dict[bytes, Function] = {}
        self.jobs: dict[bytes, Job] = {}  # by handle: every job in the server (by unique: Function.uniques)
        # replies to submissions that joined a job still waiting for its store commit (the job's own
        # submitter's reply waits in its batch: group.Batch.holds)
        self.pending_holds: dict[Job, list[tuple[Peer, Hold]]] = {}
        self.peers: dict[int, Peer] = {}
        self.dirty: list[Peer] = []
        #: peers whose output begins with a NOOP wake-up: written before those on ``dirty``
        self.woken: list[Peer] = []
        self.counter = 0
        self._seq = itertools.count()
        self.epoch_heap: list[tuple[float, int, Job]] = []
        self.timeout_heap: list[tuple[float, int, Job, Peer, int]] = []
        self.sched_heap: list[tuple[float, int, Schedule]] = []
        self.wake_heap: list[tuple[float, int, Peer, Function]] = []  # wake-ups to pass on if not answered
        self._epoch_limit = 1024  # heap sizes that trigger dropping dead entries (amortized O(1) per push)
        self._timeout_limit = 1024
        self.schedules: dict[bytes, Schedule] = {}  # by handle
        self.schedule_keys: dict[tuple[bytes, bytes], Schedule] = {}
        self.next_peer_id = 0
        self.draining = False  # graceful shutdown: hand out no new jobs
        # per priority, the functions that may have runnable jobs (a superset: emptied ones are dropped lazily)
        self.ready: tuple[dict[Function, None], ...] = ({}, {}, {})
        # sleeping workers with many functions: kept here once instead of in each function's sleepers
        self.wide_sleepers: OrderedDict[Peer, None] = OrderedDict()
        # server-wide counters (per-function ones live on Function)
        self.submitted = 0
        self.completed = 0
        self.failed = 0
        self.exceptions = 0
        self.retried = 0
        self.timed_out = 0
        self.dropped = 0
        #: ACL hook: called as acl(peer, action, name) -> bool; None allows everything
        self.acl: Callable[[Peer, str, bytes], bool] | None = None
        #: admin text line handler, set by the app: text(peer, line)
        self.text: Callable[[Peer, bytes], None] = lambda peer, line: None
        self.dispatch = self._build_dispatch()

    # ------------------------------------------------------------------ plumbing

    def _build_dispatch(self) -> list[Callable[[Peer, tuple[bytes, ...]], None]]:
        table: list[Callable[[Peer, tuple[bytes, ...]], None]] = [self._not_expected] * (MAX_TYPE + 1)
        table[0] = self._text
        table[T.CAN_DO] = self._can_do
        table[T.CANT_DO] = self._cant_do
        table[T.RESET_ABILITIES] = self._reset_abilities
        table[T.PRE_SLEEP] = self._pre_sleep
        table[T.GRAB_JOB] = partial(self._grab, JOB_ASSIGN)
        table[T.GRAB_JOB_UNIQ] = partial(self._grab, JOB_ASSIGN_UNIQ)
        table[T.GRAB_JOB_ALL] = partial(self._grab, JOB_ASSIGN_ALL)
        table[T.WORK_STATUS] = self._work_status
        table[T.WORK_COMPLETE] = self._work_complete
        table[T.WORK_FAIL] = self._work_fail
        table[T.WORK_EXCEPTION] = self._work_exception
        table[T.WORK_DATA] = partial(self._work_forward, T.WORK_DATA)
        table[T.WORK_WARNING] = partial(self._work_forward, T.WORK_WARNING)
        table[T.GET_STATUS] = self._get_status
        table[T.GET_STATUS_UNIQUE] = self._get_status_unique
        table[T.ECHO_REQ] = self._echo
        table[T.SET_CLIENT_ID] = self._set_client_id
        table[T.CAN_DO_TIMEOUT] = self._can_do_timeout
        table[T.OPTION_REQ] = self._option
        for ptype in (T.SUBMIT_JOB, T.SUBMIT_JOB_BG, T.SUBMIT_JOB_HIGH, T.SUBMIT_JOB_HIGH_BG, T.SUBMIT_JOB_LOW,
                      T.SUBMIT_JOB_LOW_BG):
            priority, background = SUBMIT_KINDS[ptype]
            table[ptype] = partial(self._submit, priority, background)
        table[T.SUBMIT_JOB_EPOCH] = self._submit_epoch
        table[T.SUBMIT_JOB_SCHED] = self._submit_sched
        table[T.SUBMIT_REDUCE_JOB] = partial(self._submit_reduce, False)
        table[T.SUBMIT_REDUCE_JOB_BACKGROUND] = partial(self._submit_reduce, True)
        return table

    def send(self, peer: Peer, data: bytes) -> None:
        """Queue DATA for PEER; the connection layer writes it with the rest of this turn's output."""
        if peer.closed:
            return
        out = peer.out
        if not out:
            self.dirty.append(peer)
        out.append(data)

    def send_parts(self, peer: Peer, head: bytes, payload: bytes) -> None:
        """Queue a packet whose big PAYLOAD follows HEAD as a part of its own: the connection layer hands
        the parts to writelines instead of copying the payload into one string."""
        if not peer.closed:
            self.send(peer, head)
            peer.out.append(payload)
            peer.big = True

    def _hold(self, peer: Peer) -> Hold:
        hold = Hold()
        if not peer.closed:
            if not peer.out:
                self.dirty.append(peer)
            peer.out.append(hold)
            peer.holds += 1
        return hold

    def _resolve(self, peer: Peer, hold: Hold, data: bytes) -> None:
        if hold.data is None and not peer.closed:
            hold.data = data
            self.dirty.append(peer)

    @staticmethod
    def take_output(peer: Peer) -> bytes:
        """Everything PEER may be sent now: its output up to the first reply still waiting for a commit."""
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

    def function(self, name: bytes) -> Function:
        """The Function record for NAME, created on first use."""
        f = self.functions.get(name)
        if f is None:
            f = self.functions[name] = Function(name)
        return f

    def connect(self, fd: int = -1, host: str = "-") -> Peer:
        """A new connection: its Peer, to pass to every dispatch call for it."""
        self.next_peer_id += 1
        peer = Peer(self.next_peer_id, fd, host)
        peer.exceptions = self.exceptions_default
        self.peers[peer.id] = peer
        return peer

    def _new_handle(self) -> bytes:
        self.counter += 1
        return self.prefix + str(self.counter).encode()

    def _allowed(self, peer: Peer, action: str, name: bytes) -> bool:
        acl = self.acl
        if acl is None or acl(peer, action, name):
            return True
        self.send(peer, error_packet(ErrorCode.PERMISSION_DENIED, f"{action} not allowed".encode()))
        return False

    # ------------------------------------------------------------------ generic packets

    def _not_expected(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        self.send(peer, NOT_EXPECTED)

    def _text(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        self.text(peer, args[0])

    def _echo(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        self.send(peer, pack_res(T.ECHO_RES, args[0]))

    def _set_client_id(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        peer.client_id = args[0][:127] or b"-"

    def _option(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        if args[0].lower() == b"exceptions":
            peer.exceptions = True
            self.send(peer, pack_res(T.OPTION_RES, args[0]))
        else:
            self.send(peer, UNKNOWN_OPTION)

    # ------------------------------------------------------------------ status

    def _get_status(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        handle = args[0]
        if len(handle) > MAX_HANDLE_SIZE:
            self.send(peer, HANDLE_TOO_LARGE)
            return
        job = self.jobs.get(handle)
        if job is None or job.state == DONE:
            self.send(peer, pack_res(T.STATUS_RES, handle, b"0", b"0", b"0", b"0"))
            return
        self.send(peer, pack_res(T.STATUS_RES, handle, b"1", b"1" if job.state == RUNNING else b"0",
                                 str(atoi(job.numerator) & 0xFFFFFFFF).encode(),
                                 str(atoi(job.denominator) & 0xFFFFFFFF).encode()))

    def find_unique(self, unique: bytes) -> Job | None:
        """The newest job with this unique, of any function (gearmand's unique table lists newest first)."""
        found = None
        for f in self.functions.values():
            job = f.uniques.get(unique)
            if job is not None and (found is None or _counter(job.handle) > _counter(found.handle)):
                found = job
        return found

    def _get_status_unique(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        unique = args[0]
        if len(unique) > MAX_UNIQUE_SIZE:
            self.send(peer, UNIQUE_TOO_LARGE)
            return
        job = self.find_unique(unique)
        if job is None:
            self.send(peer, pack_res(T.STATUS_RES_UNIQUE, unique, b"0", b"0", b"0", b"0", b"0"))
            return
        self.send(peer, pack_res(T.STATUS_RES_UNIQUE, unique, b"1", b"1" if job.state == RUNNING else b"0",
                                 str(atoi(job.numerator) & 0xFFFFFFFF).encode(),
                                 str(atoi(job.denominator) & 0xFFFFFFFF).encode(),
                                 str(len(job.clients)).encode()))

    # ------------------------------------------------------------------ connections going away

    def disconnect(self, peer: Peer) -> None:
        """The connection closed: requeue what it was running, detach it from what it waited for."""
        if peer.closed and peer.id not in self.peers:
            return
        peer.closed = True
        peer.out.clear()
        self.peers.pop(peer.id, None)
        woken_for = peer.woken_for
        peer.woken_for = None
        self._unsleep(peer)
        for f in peer.abilities:
            f.workers -= 1
        peer.abilities = []
        peer.funcs = []
        peer.timeouts = {}
        if peer.jobs:
            jobs = list(peer.jobs.values())
            peer.jobs.clear()
            for job in jobs:
                job.function.running -= 1
                job.worker = None
                self._retry(job, "worker disconnected")
        if peer.client_jobs:
            for job in peer.client_jobs:
                job.clients = [c for c in job.clients if c is not peer]
                if not job.clients and not job.background and job.state in (QUEUED, DELAYED):
                    self._abandon(job)
            peer.client_jobs = {}
        if woken_for is not None and woken_for.has_runnable():
            # it was woken for work it will not do now: wake someone else
            self._wake(woken_for, 1)

    # ------------------------------------------------------------------ admin operations

    def cancel(self, handle: bytes) -> bool:
        """Admin `cancel job`: drop a queued (not running) job, WORK_FAIL to its clients. False if unknown."""
        sched = self.schedules.get(handle)
        if sched is not None:
            self._unschedule(sched)
            return True
        job = self.jobs.get(handle)
        if job is None or job.state not in (QUEUED, DELAYED):
            return False
        f = job.function
        queued = job.state == QUEUED
        if queued:
            f.queued[job.priority] -= 1
        else:
            f.delayed[job.priority] -= 1
        self._end(job, FAILED)
        if queued:
            compact_queue(f, job.priority)
        return True

    def drop_function(self, name: bytes) -> str:
        """Admin `drop function`: 'ok', 'busy' (workers or running jobs) or 'missing'."""
        f = self.functions.get(name)
        if f is None:
            return "missing"
        if f.workers or f.running:
            return "busy"
        for p in (HIGH, NORMAL, LOW):
            for job in list(f.queues[p]):
                if job.state == QUEUED:
                    f.queued[p] -= 1
                    self._end(job, FAILED)
            f.queues[p].clear()
        for job in list(self.jobs.values()):
            if job.function is f and job.state == DELAYED:
                f.delayed[job.priority] -= 1
                self._end(job, FAILED)
        for sched in list(self.schedules.values()):
            if sched.function is f:
                self._unschedule(sched)
        del self.functions[name]
        return "ok"

    def restore(self, stored: Any) -> Job | Schedule | None:
        """Queue a job read back from the durable store at start (a StoredJob)."""
        if stored.schedule:
            try:
                cron = Cron.parse(*stored.schedule.split(b" "))
            except (CronError, TypeError):
                self.notice(f"Ignoring stored schedule with a bad spec: {stored.schedule!r}")
                return None
            sched = self.schedule(None, stored.function, stored.unique, stored.data, stored.priority, cron,
                                  stored=True)
            sched.skey = stored
            return sched
        priority = stored.priority if stored.priority in (HIGH, NORMAL, LOW) else NORMAL
        job = self.submit(None, stored.function, stored.unique, stored.data, priority, True,
                          reducer=stored.reducer, when=stored.when)
        if job is not None and job.store_key is None:
            job.store_key = stored.store_key  # the key, not the record: a million replayed jobs keep no StoredJob
        return job


def _counter(handle: bytes) -> int:
    """The N of a handle PREFIX:N (its creation order)."""
    tail = handle.rpartition(b":")[2]
    return int(tail) if tail.isdigit() else 0


def valid_prefix(prefix: bytes) -> bool:
    """Whether handles PREFIX:N stay within gearmand's 64 bytes for any 32-bit counter N."""
    return len(prefix) + 1 + 10 <= MAX_HANDLE_SIZE


__all__ = ["State", "Schedule", "atoi", "default_handle_prefix", "valid_prefix", "COMPLETED", "FAILED", "EXCEPTION"]
