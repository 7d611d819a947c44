"""The job server's logic: jobs, queues, workers and wake-ups, as plain objects with no I/O.

Driven by ``State.dispatch[ptype](peer, args)`` for each parsed packet, ``State.tick(now)`` for
timers (epoch jobs, CAN_DO_TIMEOUT, cron schedules) and ``State.connect/disconnect`` for
connections. Replies are appended to ``peer.out`` (bytes built with codec.pack_res) and the peer
is put on ``State.dirty``; the connection layer writes each dirty peer's output with one write.
There is no asyncio, no socket and no clock in here: the caller sets ``State.now`` (epoch seconds).

Cost per submit, grab and result is O(1) in the queue depth: one deque per (function, priority),
lazy deletion for cancelled or abandoned jobs, a heap for epoch jobs and for timeouts.
"""

from __future__ import annotations

import heapq
import itertools
import socket
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any

from ..protocol.codec import error_packet, pack_res
from ..protocol.packets import (
    HIGH,
    LOW,
    MAX_HANDLE_SIZE,
    MAX_TYPE,
    MAX_UNIQUE_SIZE,
    NORMAL,
    SUBMIT_KINDS,
    ErrorCode,
    T,
)
from .jobs import DELAYED, DONE, PENDING, QUEUED, RUNNING, TIME_BUCKETS, Function, Hold, Job, Peer
from .schedule import Cron, CronError
from .store.base import StoredJob

_NOOP = pack_res(T.NOOP)
_NO_JOB = pack_res(T.NO_JOB)
_JOB_CREATED = T.JOB_CREATED
_JOB_ASSIGN = T.JOB_ASSIGN
_JOB_ASSIGN_UNIQ = T.JOB_ASSIGN_UNIQ
_JOB_ASSIGN_ALL = T.JOB_ASSIGN_ALL
_WORK_FAIL = T.WORK_FAIL
_NOT_EXPECTED = error_packet(ErrorCode.INVALID_COMMAND, b"Command not expected")
# gearmand words "job not found" differently per packet type
_JOB_NOT_FOUND = error_packet(ErrorCode.JOB_NOT_FOUND, b"Job given in work result not found")
_DATA_NOT_FOUND = error_packet(ErrorCode.JOB_NOT_FOUND, b"Job does not exist on server")
_EXCEPTION_NOT_FOUND = error_packet(ErrorCode.JOB_NOT_FOUND, b"An exception was received for a job that does not exist")
_UNIQUE_TOO_LARGE = error_packet(ErrorCode.ARGUMENT_TOO_LARGE, b"Unique value too large")
_HANDLE_TOO_LARGE = error_packet(ErrorCode.ARGUMENT_TOO_LARGE, b"Job handle too large")
_QUEUE_FULL = error_packet(ErrorCode.QUEUE_ERROR, b"Job queue is full")
_UNKNOWN_OPTION = error_packet(ErrorCode.UNKNOWN_OPTION, b"Server does not recognize given option")

#: the first histogram bound: most waits and runs under load end below it, and then need no bisect
_FIRST_BOUND = TIME_BUCKETS[0]

#: a worker with more functions than this is served from State.ready rather than by walking its list
_MANY_FUNCTIONS = 16

#: how a job ended, for the metrics counters and the log
COMPLETED, FAILED, EXCEPTION = "completed", "failed", "exception"


def atoi(value: bytes) -> int:
    """C's atoi: optional sign and leading digits, anything else is 0."""
    value = value.strip()
    n = 0
    sign = 1
    i = 0
    if value[:1] in (b"-", b"+"):
        sign = -1 if value[:1] == b"-" else 1
        i = 1
    while i < len(value) and 48 <= value[i] <= 57:
        n = n * 10 + value[i] - 48
        i += 1
    return sign * n


def default_handle_prefix() -> bytes:
    """gearmand's default: ``H:<hostname>``."""
    return b"H:" + socket.gethostname().encode(errors="replace")


def _compact(f: Function, priority: int) -> None:
    """Drop the dead entries lazy deletion left in a queue once they outnumber the live ones (amortized O(1)).

    Without it, clients that submit and leave while no worker drains the queue grow it without bound
    (found by the 100,000-round connect/submit/disconnect test in tests/server/test_faults.py)."""
    dq = f.queues[priority]
    if len(dq) > 64 and len(dq) > 2 * f.queued[priority]:
        live = [job for job in dq if job.state == QUEUED]
        dq.clear()
        dq.extend(live)


class Schedule:
    """A recurring (SUBMIT_JOB_SCHED) job: each time its cron spec fires, a background run is queued."""

    __slots__ = ("handle", "function", "unique", "data", "priority", "cron", "next", "stored", "active", "runs",
                 "skey")

    def __init__(self, handle: bytes, function: Function, unique: bytes, data: bytes, priority: int,
                 cron: Cron) -> None:
        self.handle = handle
        self.function = function
        self.unique = unique
        self.data = data
        self.priority = priority
        self.cron = cron
        self.next = 0
        self.stored = False
        self.active = True
        self.runs = 0
        self.skey: Any = None  # the StoredJob it was stored as (its .key finds it again)


class State:
    """Every job, function and connection of one server, and what to do with each packet."""

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
    ) -> None:
        self.prefix = (handle_prefix if handle_prefix is not None else default_handle_prefix()) + b":"
        self.job_retries = job_retries  # <= 0: unlimited (gearmand 1.1.20's default 0)
        self.worker_wakeup = worker_wakeup  # sleepers woken per queued job; 0 = all of them
        self.exceptions_default = exceptions
        self.committer = committer  # group.GroupCommit for a durable store, None for memory
        self.notice = notice or (lambda msg: None)  # log line for rare events (drops, timeouts)
        self.now = now
        self.functions: dict[bytes, Function] = {}
        self.jobs: dict[bytes, Job] = {}  # by handle: every job in the server (by unique: Function.uniques)
        self.pending_holds: dict[Job, list[tuple[Peer, Hold]]] = {}  # replies waiting for a job's store commit
        self.peers: dict[int, Peer] = {}
        self.dirty: list[Peer] = []
        self.counter = 0
        self._seq = itertools.count()
        self.epoch_heap: list[tuple[float, int, Job]] = []
        self.timeout_heap: list[tuple[float, int, Job, Peer, int]] = []
        self.sched_heap: list[tuple[float, int, Schedule]] = []
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
        table[T.GRAB_JOB] = partial(self._grab, _JOB_ASSIGN)
        table[T.GRAB_JOB_UNIQ] = partial(self._grab, _JOB_ASSIGN_UNIQ)
        table[T.GRAB_JOB_ALL] = partial(self._grab, _JOB_ASSIGN_ALL)
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
        self.send(peer, _NOT_EXPECTED)

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
            self.send(peer, _UNKNOWN_OPTION)

    # ------------------------------------------------------------------ submitting

    def _submit(self, priority: int, background: bool, peer: Peer, args: tuple[bytes, ...]) -> None:
        name, unique, data = args
        if len(unique) > MAX_UNIQUE_SIZE:
            self.send(peer, _UNIQUE_TOO_LARGE)
            return
        self.submit(peer, name, unique, data, priority, background)

    def _submit_epoch(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        name, unique, when, data = args
        if len(unique) > MAX_UNIQUE_SIZE:
            self.send(peer, _UNIQUE_TOO_LARGE)
            return
        self.submit(peer, name, unique, data, NORMAL, True, when=atoi(when))

    def _submit_reduce(self, background: bool, peer: Peer, args: tuple[bytes, ...]) -> None:
        name, unique, reducer, _aggregator, data = args
        if len(unique) > MAX_UNIQUE_SIZE:
            self.send(peer, _UNIQUE_TOO_LARGE)
            return
        self.submit(peer, name, unique, data, NORMAL, background, reducer=reducer)

    def submit(self, peer: Peer | None, name: bytes, unique: bytes, data: bytes, priority: int, background: bool,
               *, reducer: bytes = b"", when: int = 0) -> Job | None:
        """Queue a job (or join the job with the same function and unique) and reply JOB_CREATED.

        PEER None is an internal submission (a cron run, a replayed job): no reply, no client.
        """
        if self.acl is not None and peer is not None and not self._allowed(peer, "submit", name):
            return None
        f = self.functions.get(name)
        if f is None:
            f = self.function(name)
        if unique and (data or unique != b"-"):
            key: Any = unique if unique != b"-" else (data,)
            job = f.uniques.get(key)
            if job is not None:
                self._join(peer, job, background)
                return job
        else:
            key = None
        limit = f.maxqueue[priority]
        if limit and f.total >= limit:
            if peer is not None:
                self.send(peer, _QUEUE_FULL)
            return None
        self.counter += 1
        handle = self.prefix + str(self.counter).encode()
        job = Job(handle, f, unique, data, priority, background, reducer, when)
        f.submitted += 1
        self.submitted += 1
        self.jobs[handle] = job
        if key is not None:
            f.uniques[key] = job
        if peer is not None and not background:
            job.clients = [peer]
            peer.client_jobs[job] = None
        if background and self.committer is not None and peer is not None:
            # durable: JOB_CREATED only once the store has it
            job.state = PENDING
            f.delayed[priority] += 1
            self.pending_holds[job] = [(peer, self._hold(peer))]
            record = self.record(job)
            self.committer.add(record, partial(self._committed, job, record))
            return job
        if peer is not None:
            self.send(peer, pack_res(_JOB_CREATED, handle))
        if when and when > self.now:
            self._delay(job)
        else:
            self._enqueue(job)
        return job

    def _join(self, peer: Peer | None, job: Job, background: bool) -> None:
        """A submission with the unique of an existing job: attach to it instead of queueing another."""
        if peer is None:
            return
        if not background:
            if job.clients:
                job.clients.append(peer)
            else:
                job.clients = [peer]
            peer.client_jobs[job] = None
        elif not job.background:
            # a background submission joined a foreground job: it must now survive its clients leaving
            job.background = True
            if self.committer is not None and job.store_key is None and job.state != PENDING:
                job.store_key = b""  # its done goes out even if it ends before the commit
                hold = self._hold(peer)
                record = self.record(job)
                self.committer.add(record, partial(self._join_committed, job, record, peer, hold))
                return
        if job.state == PENDING:
            self.pending_holds[job].append((peer, self._hold(peer)))
        else:
            self.send(peer, pack_res(_JOB_CREATED, job.handle))

    def _delay(self, job: Job) -> None:
        job.state = DELAYED
        job.function.delayed[job.priority] += 1
        heap = self.epoch_heap
        heapq.heappush(heap, (job.when, next(self._seq), job))
        if len(heap) > self._epoch_limit:
            # cancelled epoch jobs stay in the heap until their time: drop them once they are half of it
            heap[:] = [e for e in heap if e[2].state == DELAYED]
            heapq.heapify(heap)
            self._epoch_limit = max(1024, 2 * len(heap))

    def _enqueue(self, job: Job, head: bool = False) -> None:
        f = job.function
        p = job.priority
        job.state = QUEUED
        job.queued_at = self.now
        if head:
            f.queues[p].appendleft(job)
        else:
            f.queues[p].append(job)
        if not f.queued[p]:
            self.ready[p][f] = None
        f.queued[p] += 1
        if f.sleepers or self.wide_sleepers:
            self._wake(f, self.worker_wakeup)

    @staticmethod
    def record(job: Job) -> StoredJob:
        """The store's record of a background job (the store may give it a key if its unique is empty).

        Only the key the store files it under is kept with the job once committed (Job.store_key)."""
        return StoredJob(job.function.name, job.unique, job.data, job.priority, int(job.when or 0), job.reducer)

    def _committed(self, job: Job, record: StoredJob, error: str | None) -> None:
        """The store committed (ERROR None) or refused a new background job: answer its submitters."""
        holds = self.pending_holds.pop(job, ())
        if job.state != PENDING:
            return
        f = job.function
        f.delayed[job.priority] -= 1
        if error is None:
            job.store_key = record.store_key
            reply = pack_res(_JOB_CREATED, job.handle)
            for peer, hold in holds:
                self._resolve(peer, hold, reply)
            if job.when and job.when > self.now:
                self._delay(job)
            else:
                self._enqueue(job)
        else:
            reply = error_packet(ErrorCode.QUEUE_ERROR, error.encode(errors="replace")[:1024])
            for peer, hold in holds:
                self._resolve(peer, hold, reply)
            job.state = DONE
            f.submitted -= 1
            self.submitted -= 1
            self._forget(job)

    def _join_committed(self, job: Job, record: StoredJob, peer: Peer, hold: Hold, error: str | None) -> None:
        if error is None:
            if job.store_key is not None:
                job.store_key = record.store_key
            elif record.store_key and job.state == DONE:
                self.committer.done(record.key)  # it ended before the commit, and its done had the wrong key
            self._resolve(peer, hold, pack_res(_JOB_CREATED, job.handle))
        else:
            job.store_key = None
            self._resolve(peer, hold, error_packet(ErrorCode.QUEUE_ERROR, error.encode(errors="replace")[:1024]))

    # ------------------------------------------------------------------ workers

    def _can_do(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        self.can_do(peer, args[0], 0.0)

    def _can_do_timeout(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        # libgearman documents seconds; gearmand >= 1.1.19 reads milliseconds (gearmand issue #196).
        # We read seconds, which keeps workers written against libgearman's documentation working.
        self.can_do(peer, args[0], float(max(atoi(args[1]), 0)))

    def can_do(self, peer: Peer, name: bytes, timeout: float) -> None:
        if self.acl is not None and not self._allowed(peer, "can_do", name):
            return
        f = self.function(name)
        f.workers += 1
        peer.abilities.append(f)
        if f not in peer.timeouts:
            peer.funcs.append(f)
        peer.timeouts[f] = timeout
        if peer.sleeping and not peer.noop_sent:
            if f.has_runnable():
                peer.woken_for = f
                self._noop(peer)
            elif peer not in self.wide_sleepers:
                f.sleepers[peer] = None

    def _cant_do(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        f = self.functions.get(args[0])
        if f is not None and f in peer.timeouts:
            self._drop_ability(peer, f)

    def _reset_abilities(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        for f in list(peer.funcs):
            self._drop_ability(peer, f)

    def _drop_ability(self, peer: Peer, f: Function) -> None:
        # Jobs the worker is running for F stay with it: it may still finish them (gearmand requeues them).
        n = 0
        kept = []
        for g in peer.abilities:
            if g is f:
                n += 1
            else:
                kept.append(g)
        peer.abilities = kept
        f.workers -= n
        peer.funcs.remove(f)
        del peer.timeouts[f]
        f.sleepers.pop(peer, None)
        if peer.rr >= len(peer.funcs):
            peer.rr = 0

    def _pre_sleep(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        funcs = peer.funcs
        if len(funcs) > _MANY_FUNCTIONS:
            mine = peer.timeouts
            waiting = [f for ready in self.ready for f in ready if f in mine]
        else:
            waiting = funcs
        for f in waiting:
            q = f.queued
            if q[0] or q[1] or q[2]:
                # a job is waiting: do not let the worker sleep through it
                peer.woken_for = f
                peer.noop_sent = True
                peer.sleeping = True
                self.send(peer, _NOOP)
                return
        peer.sleeping = True
        peer.noop_sent = False
        if len(funcs) > _MANY_FUNCTIONS:
            self.wide_sleepers[peer] = None  # one entry, not one per function
        else:
            for f in funcs:
                f.sleepers[peer] = None

    def _unsleep(self, peer: Peer) -> None:
        """Take PEER off every list of sleepers."""
        if self.wide_sleepers.pop(peer, 0) is None:
            return
        for g in peer.funcs:
            g.sleepers.pop(peer, None)

    def _noop(self, peer: Peer) -> None:
        peer.noop_sent = True
        self._unsleep(peer)
        self.send(peer, _NOOP)

    def _wake(self, f: Function, n: int) -> None:
        """Wake up to N (0 = all) sleeping workers of F, longest asleep first (round-robin over sleepers)."""
        sleepers = f.sleepers
        wide = self.wide_sleepers
        if not n:
            n = len(sleepers) + len(wide)
        while sleepers and n:
            peer = sleepers.popitem(last=False)[0]
            peer.woken_for = f
            self._noop(peer)
            n -= 1
        if n and wide:
            for peer in [p for p in wide if f in p.timeouts][:n]:
                peer.woken_for = f
                self._noop(peer)

    def _take(self, peer: Peer) -> Job | None:
        """The next job for PEER: highest priority first across all its functions, round-robin among them."""
        funcs = peer.funcs
        n = len(funcs)
        if n == 1:
            f = funcs[0]
            q = f.queued
            for p in (HIGH, NORMAL, LOW):
                if q[p]:
                    dq = f.queues[p]
                    job = dq.popleft()
                    while job.state != QUEUED:
                        job = dq.popleft()
                    q[p] -= 1
                    return job
            return None
        if not n:
            return None
        if n > _MANY_FUNCTIONS:
            return self._take_many(peer)
        rr = peer.rr
        for p in (HIGH, NORMAL, LOW):
            for i in range(n):
                j = (rr + i) % n
                f = funcs[j]
                if f.queued[p]:
                    dq = f.queues[p]
                    job = dq.popleft()
                    while job.state != QUEUED:
                        job = dq.popleft()
                    f.queued[p] -= 1
                    peer.rr = (j + 1) % n
                    return job
        return None

    def _take_many(self, peer: Peer) -> Job | None:
        """_take for a worker with many functions (CI systems register thousands): walk the functions that
        have jobs (State.ready) instead of the worker's list; a served function moves to the back."""
        mine = peer.timeouts
        for p in (HIGH, NORMAL, LOW):
            ready = self.ready[p]
            if not ready:
                continue
            empty = []
            found = None
            for f in ready:
                if not f.queued[p]:
                    empty.append(f)
                elif f in mine:
                    found = f
                    break
            for f in empty:
                del ready[f]
            if found is not None:
                dq = found.queues[p]
                job = dq.popleft()
                while job.state != QUEUED:
                    job = dq.popleft()
                found.queued[p] -= 1
                del ready[found]
                if found.queued[p]:
                    ready[found] = None
                return job
        return None

    def _grab(self, kind: int, peer: Peer, args: tuple[bytes, ...]) -> None:
        if peer.sleeping:
            peer.sleeping = False
            if not peer.noop_sent:
                self._unsleep(peer)
            peer.noop_sent = False
        job = self._take(peer) if not self.draining else None
        woken_for = peer.woken_for
        if woken_for is not None:
            peer.woken_for = None
            if (job is None or job.function is not woken_for) and woken_for.has_runnable():
                # woken for F but took other work: pass F's wake-up on to another sleeper
                self._wake(woken_for, 1)
        if job is None:
            self.send(peer, _NO_JOB)
            return
        f = job.function
        job.state = RUNNING
        job.worker = peer
        now = self.now
        job.started_at = now
        wait = now - job.queued_at
        # queue-wait histogram, inline: one float compare for the common "taken within a millisecond"
        f.wait_hist[0 if wait <= _FIRST_BOUND else bisect_left(TIME_BUCKETS, wait)] += 1
        f.wait_sum += wait
        f.running += 1
        handle = job.handle
        peer.jobs[handle] = job
        timeout = peer.timeouts[f]
        if timeout:
            if peer.stale:
                peer.stale.discard(handle)
            heap = self.timeout_heap
            heapq.heappush(heap, (self.now + timeout, next(self._seq), job, peer, job.retries))
            if len(heap) > self._timeout_limit:
                # finished jobs' deadlines stay in the heap until due: drop them once they are half of it
                heap[:] = [e for e in heap if e[2].state == RUNNING and e[2].worker is e[3] and e[2].retries == e[4]]
                heapq.heapify(heap)
                self._timeout_limit = max(1024, 2 * len(heap))
        if kind == _JOB_ASSIGN:
            self.send(peer, pack_res(_JOB_ASSIGN, handle, f.name, job.data))
        elif kind == _JOB_ASSIGN_ALL and job.reducer:
            self.send(peer, pack_res(_JOB_ASSIGN_ALL, handle, f.name, job.unique, job.reducer, job.data))
        else:
            self.send(peer, pack_res(_JOB_ASSIGN_UNIQ, handle, f.name, job.unique, job.data))

    # ------------------------------------------------------------------ results

    def _unknown_result(self, peer: Peer, handle: bytes, final: bool, error: bytes = _JOB_NOT_FOUND) -> None:
        if handle in peer.stale:
            # the late result of a job taken away on timeout: ignore it quietly
            if final:
                peer.stale.discard(handle)
            return
        self.send(peer, error)

    def _work_forward(self, ptype: int, peer: Peer, args: tuple[bytes, ...]) -> None:
        job = peer.jobs.get(args[0])
        if job is None:
            self._unknown_result(peer, args[0], False, _DATA_NOT_FOUND)
            return
        if job.clients:
            packet = pack_res(ptype, *args)
            for client in job.clients:
                self.send(client, packet)

    def _work_status(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        job = peer.jobs.get(args[0])
        if job is None:
            self._unknown_result(peer, args[0], False)
            return
        job.progress = (args[1], args[2])
        if job.clients:
            packet = pack_res(T.WORK_STATUS, *args)
            for client in job.clients:
                self.send(client, packet)

    def _work_complete(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        job = peer.jobs.pop(args[0], None)
        if job is None:
            self._unknown_result(peer, args[0], True)
            return
        f = job.function
        ran = self.now - job.started_at  # run-time histogram, inline as the queue-wait one in _grab
        f.run_hist[0 if ran <= _FIRST_BOUND else bisect_left(TIME_BUCKETS, ran)] += 1
        f.run_sum += ran
        if job.clients:
            packet = pack_res(T.WORK_COMPLETE, *args)
            for client in job.clients:
                self.send(client, packet)
        f.running -= 1
        f.completed += 1
        self.completed += 1
        job.worker = None
        job.state = DONE
        self._forget(job)

    def _work_fail(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        job = peer.jobs.pop(args[0], None)
        if job is None:
            self._unknown_result(peer, args[0], True)
            return
        f = job.function
        ran = self.now - job.started_at
        f.run_hist[0 if ran <= _FIRST_BOUND else bisect_left(TIME_BUCKETS, ran)] += 1
        f.run_sum += ran
        f.running -= 1
        job.worker = None
        self._end(job, FAILED)

    def _work_exception(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        job = peer.jobs.pop(args[0], None)
        if job is None:
            self._unknown_result(peer, args[0], True, _EXCEPTION_NOT_FOUND)
            return
        f = job.function
        ran = self.now - job.started_at
        f.run_hist[0 if ran <= _FIRST_BOUND else bisect_left(TIME_BUCKETS, ran)] += 1
        f.run_sum += ran
        if job.clients:
            packet = pack_res(T.WORK_EXCEPTION, *args)
            fail = pack_res(_WORK_FAIL, job.handle)
            for client in job.clients:
                self.send(client, packet if client.exceptions else fail)
        job.function.running -= 1
        job.worker = None
        job.function.exceptions += 1
        self.exceptions += 1
        job.state = DONE
        self._forget(job)

    def _end(self, job: Job, how: str) -> None:
        """Finish a job that is no longer queued or running: tell its clients WORK_FAIL and forget it."""
        if job.clients:
            packet = pack_res(_WORK_FAIL, job.handle)
            for client in job.clients:
                self.send(client, packet)
        job.function.failed += 1
        self.failed += 1
        job.state = DONE
        self._forget(job)

    def _forget(self, job: Job) -> None:
        """Remove a finished job from every index (and from the durable store)."""
        handle = job.handle
        if self.jobs.get(handle) is job:
            del self.jobs[handle]
        unique = job.unique
        if unique:
            key: Any = unique if unique != b"-" else (job.data,)
            uniques = job.function.uniques
            if uniques.get(key) is job:
                del uniques[key]
        if job.clients:
            for client in job.clients:
                client.client_jobs.pop(job, None)
            job.clients = ()
        if job.store_key is not None:
            self.committer.done(job.store_id)
            job.store_key = None

    # ------------------------------------------------------------------ status

    def _get_status(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        handle = args[0]
        if len(handle) > MAX_HANDLE_SIZE:
            self.send(peer, _HANDLE_TOO_LARGE)
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
            self.send(peer, _UNIQUE_TOO_LARGE)
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

    def _abandon(self, job: Job) -> None:
        """A queued foreground job whose every client left: nobody wants it, drop it (as gearmand)."""
        f = job.function
        queued = job.state == QUEUED
        if queued:
            f.queued[job.priority] -= 1
        elif job.state == DELAYED:
            f.delayed[job.priority] -= 1
        job.state = DONE
        self.dropped += 1
        self._forget(job)
        if queued:
            _compact(f, job.priority)

    def _retry(self, job: Job, why: str) -> None:
        """A job came back from a worker that did not finish it: requeue at the head, or fail it after -j tries."""
        f = job.function
        job.retries += 1
        job.progress = None
        if not job.clients and not job.background:
            job.state = DONE
            self.dropped += 1
            self._forget(job)
            return
        if self.job_retries > 0 and job.retries >= self.job_retries:
            self.notice(f"Dropped job due to max retry count: {job.handle.decode(errors='replace')} "
                        f"{f.name.decode(errors='replace')} after {job.retries} tries ({why})")
            self._end(job, FAILED)
            return
        f.retried += 1
        self.retried += 1
        self._enqueue(job, head=True)

    # ------------------------------------------------------------------ timers

    def next_wakeup(self) -> float | None:
        """When tick() next has something to do (epoch seconds), or None."""
        t = None
        for heap in (self.epoch_heap, self.timeout_heap, self.sched_heap):
            if heap and (t is None or heap[0][0] < t):
                t = heap[0][0]
        return t

    def tick(self, now: float) -> None:
        """Run the timers due at NOW: epoch jobs become runnable, timed-out jobs come back, cron runs fire."""
        self.now = now
        heap = self.epoch_heap
        while heap and heap[0][0] <= now:
            job = heapq.heappop(heap)[2]
            if job.state == DELAYED:
                job.function.delayed[job.priority] -= 1
                self._enqueue(job)
        heap2 = self.timeout_heap
        while heap2 and heap2[0][0] <= now:
            _, _, job, peer, retries = heapq.heappop(heap2)
            if job.state == RUNNING and job.worker is peer and job.retries == retries:
                self._timeout(job, peer)
        heap3 = self.sched_heap
        while heap3 and heap3[0][0] <= now:
            sched = heapq.heappop(heap3)[2]
            if sched.active:
                self._fire(sched, now)

    def _timeout(self, job: Job, peer: Peer) -> None:
        """A worker ran past its CAN_DO_TIMEOUT: take the job back; its late result will be ignored."""
        f = job.function
        del peer.jobs[job.handle]
        peer.stale.add(job.handle)
        if len(peer.stale) > 10000:
            peer.stale.pop()
        f.running -= 1
        f.timeouts += 1
        self.timed_out += 1
        job.worker = None
        self.notice(f"Job {job.handle.decode(errors='replace')} of {f.name.decode(errors='replace')} timed out "
                    f"after {peer.timeouts.get(f, 0):g}s on worker {peer.host} fd {peer.fd}")
        if self.job_retries > 0:
            self._retry(job, "timed out")
        else:
            self._end(job, FAILED)

    # ------------------------------------------------------------------ cron schedules

    def _submit_sched(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        name, unique, minute, hour, mday, month, wday, data = args
        if len(unique) > MAX_UNIQUE_SIZE:
            self.send(peer, _UNIQUE_TOO_LARGE)
            return
        try:
            cron = Cron.parse(minute, hour, mday, month, wday)
            cron.next_after(self.now)
        except CronError as exc:
            self.send(peer, error_packet(ErrorCode.INVALID_ARGUMENT, str(exc).encode()))
            return
        if self.acl is not None and not self._allowed(peer, "submit", name):
            return
        self.schedule(peer, name, unique, data, NORMAL, cron)

    def schedule(self, peer: Peer | None, name: bytes, unique: bytes, data: bytes, priority: int, cron: Cron,
                 stored: bool = False) -> Schedule:
        """Add a recurring job (or return the one with the same function and unique)."""
        if unique:
            old = self.schedule_keys.get((name, unique))
            if old is not None:
                if peer is not None:
                    self.send(peer, pack_res(_JOB_CREATED, old.handle))
                return old
        f = self.function(name)
        sched = Schedule(self._new_handle(), f, unique, data, priority, cron)
        self.schedules[sched.handle] = sched
        if unique:
            self.schedule_keys[(name, unique)] = sched
        if self.committer is not None and not stored and peer is not None:
            sched.stored = True
            record = StoredJob(name, unique, data, priority, 0, b"", cron.text.encode())
            sched.skey = record
            self.committer.add(record, partial(self._sched_committed, sched, peer, self._hold(peer)))
        else:
            sched.stored = stored
            if peer is not None:
                self.send(peer, pack_res(_JOB_CREATED, sched.handle))
        self._arm(sched, self.now)
        return sched

    def _sched_committed(self, sched: Schedule, peer: Peer, hold: Hold, error: str | None) -> None:
        if error is None:
            self._resolve(peer, hold, pack_res(_JOB_CREATED, sched.handle))
        else:
            sched.stored = False
            self._unschedule(sched)
            self._resolve(peer, hold, error_packet(ErrorCode.QUEUE_ERROR, error.encode(errors="replace")[:1024]))

    def _arm(self, sched: Schedule, now: float) -> None:
        sched.next = sched.cron.next_after(now)
        heapq.heappush(self.sched_heap, (sched.next, next(self._seq), sched))

    def _fire(self, sched: Schedule, now: float) -> None:
        sched.runs += 1
        self.submit(None, sched.function.name, sched.unique, sched.data, sched.priority, True)
        self._arm(sched, now)

    def _unschedule(self, sched: Schedule) -> None:
        sched.active = False
        self.schedules.pop(sched.handle, None)
        key = (sched.function.name, sched.unique)
        if self.schedule_keys.get(key) is sched:
            del self.schedule_keys[key]
        if sched.stored:
            sched.stored = False
            self.committer.done(sched.skey.key)

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
            _compact(f, job.priority)
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
