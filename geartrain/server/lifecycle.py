"""The job lifecycle: every change of a job's state, and the counters and indexes that follow it.

As h11 keeps its state machine in one file, everything that sets ``job.state`` lives here and nowhere
else; the handlers (submitting.py, workers.py, results.py, timers.py, state.py) call these
transitions. Each one keeps what depends on a job's state: the job indexes (by handle in ``jobs``, by
unique in its function's ``uniques``), the functions that have jobs (``ready``), each function's
queues, counters and wait/run histograms, the server-wide counters, the epoch and CAN_DO_TIMEOUT
heaps, and the durable store's delete of a job that ended. A transition that ends a job also tells
its clients how it ended (WORK_COMPLETE, WORK_FAIL, WORK_EXCEPTION): the two are one event.

    transition  from                       to                  when
    place       NEW                        QUEUED or DELAYED   submitted (DELAYED: to run at an epoch time)
    pend        NEW                        PENDING             background, waiting for the durable store
    commit      PENDING                    QUEUED or DELAYED   the store has it
    refuse      PENDING                    DONE                the store refused it: it was never created
    release     DELAYED                    QUEUED              its epoch time came
    start_next  QUEUED                     RUNNING             a worker asked for a job and takes this one
    complete    RUNNING                    DONE                WORK_COMPLETE
    raise_      RUNNING                    DONE                WORK_EXCEPTION
    fail        QUEUED, DELAYED, RUNNING   DONE                WORK_FAIL, cancel, drop function, tries spent
    drop        QUEUED, DELAYED, RUNNING   DONE                no client wants it any more
    requeue     RUNNING                    QUEUED              its worker left or timed out (head of its queue),
                                                               or DONE by fail or drop if it may not run again
    retry       RUNNING                    DELAYED             a try failed and its retry policy allows another:
                                                               it waits its delay (raise_, a worker's fail, requeue
                                                               and time-outs take this path under a policy, so
                                                               they may leave a job DELAYED too)

A job whose function has a retry policy (policy.py) keeps the tries that failed (``job.history``); when
they are spent it ends as it would without a policy and is filed in the failed-job registry
(``failed``, kept.py). A background job of a function that keeps results leaves its outcome in
``kept`` when it ends. Every job that ends (complete, raise_, a failure) also leaves one tuple in ``recent``,
a ring of the last few hundred (for the dashboard), and its worker counts how its run ended (``WorkerRole.ran``).

``TRANSITIONS`` is the same table as data; the state fuzz test checks every transition a random session
makes against it. A job that becomes QUEUED while workers sleep is announced with ``runnable(function)``,
the hook through which the workers part wakes one; that hook is the only call out of this module.
"""

from __future__ import annotations

import heapq
import itertools
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from typing import Any

from ..protocol.codec import pack_res
from ..protocol.packets import HIGH, LOW, NORMAL, T
from .jobs import (
    DELAYED,
    DONE,
    NEW,
    PENDING,
    QUEUED,
    RAN_COMPLETE,
    RAN_FAILED,
    RAN_TAKEN_BACK,
    RUNNING,
    TIME_BUCKETS,
    Function,
    Job,
    Peer,
)
from .kept import FailedJobs, KeptResults
from .outbox import Outbox
from .policy import Policy
from .store.base import KeptResult, Retry, Try

#: transition -> (the states a job may be in before it, the states it may be in after it)
TRANSITIONS: dict[str, tuple[frozenset[int], frozenset[int]]] = {
    "place": (frozenset({NEW}), frozenset({QUEUED, DELAYED})),
    "pend": (frozenset({NEW}), frozenset({PENDING})),
    "commit": (frozenset({PENDING}), frozenset({QUEUED, DELAYED})),
    "refuse": (frozenset({PENDING}), frozenset({DONE})),
    "release": (frozenset({DELAYED}), frozenset({QUEUED})),
    "start_next": (frozenset({QUEUED}), frozenset({RUNNING})),
    "complete": (frozenset({RUNNING}), frozenset({DONE})),
    "raise_": (frozenset({RUNNING}), frozenset({DONE, DELAYED})),
    "fail": (frozenset({QUEUED, DELAYED, RUNNING}), frozenset({DONE, DELAYED})),
    "drop": (frozenset({QUEUED, DELAYED, RUNNING}), frozenset({DONE})),
    "requeue": (frozenset({RUNNING}), frozenset({QUEUED, DELAYED, DONE})),
    "retry": (frozenset({RUNNING}), frozenset({DELAYED})),
}

NUL = b"\0"
#: the magic and type of WORK_COMPLETE and JOB_CREATED, built by hand on the hot paths (the 4-byte size follows)
WORK_COMPLETE_HEAD = pack_res(T.WORK_COMPLETE)[:8]
JOB_CREATED_HEAD = pack_res(T.JOB_CREATED)[:8]
#: a payload at least this big is queued for writing as a part of its own (no copy into the packet)
BIG_PART = 64 * 1024
#: the first histogram bound: most waits and runs under load end below it, and then need no bisect
FIRST_BOUND = TIME_BUCKETS[0]
#: heap sizes from which dead entries are dropped (amortized O(1) per push)
HEAP_FLOOR = 1024
#: a worker with more functions than this is served from ``ready`` (the functions with jobs), not its own list
MANY_FUNCTIONS = 16
#: a worker's handles taken away on timeout that are remembered (their late results are ignored quietly)
STALE_LIMIT = 10000
#: ended jobs remembered in ``recent`` (for the dashboard), and the bytes of an exception's text kept there
RECENT_LIMIT = 300
RECENT_TEXT = 200


class Lifecycle:
    """Every job of one server, its state, and the counters and indexes that follow from it."""

    job_class = Job  # what create() makes (the fuzz test's jobs check each change of state against TRANSITIONS)
    #: take the fast paths (complete's, admit_plain): copies of the general rules inline for the commonest case,
    #: kept because the benchmark shows what they save (docs/benchmarks.md); tests/server/test_fast_paths.py runs
    #: random sessions with and without them and checks both give the same bytes and the same state
    fast = True

    def __init__(self, *, prefix: bytes, out: Outbox, job_retries: int = 0,
                 notice: Callable[..., None] | None = None, now: float = 0.0) -> None:
        self.prefix = prefix + b":"  # job handles are PREFIX:N
        self.counter = 0  # the N of the last handle
        self.now = now  # the caller's clock (epoch seconds): set per read and per timer tick
        self.out = out
        self.job_retries = job_retries  # <= 0: unlimited (gearmand 1.1.20's default 0)
        # log line for rare events (drops, timeouts): notice(message, event=..., function=..., handle=..., peer=...),
        # the keywords being fields of their own in a JSON log (logfmt.py)
        self.notice = notice or (lambda msg, **fields: None)
        self.committer: Any = None  # group.GroupCommit for a durable store, None for memory
        self.default_policy: Policy | None = None  # for functions without one of their own (--policy)
        self.kept = KeptResults()  # outcomes of background jobs, kept after they ended
        self.failed_jobs = FailedJobs()  # the failed-job registry
        #: the last RECENT_LIMIT jobs that ended, oldest first, one tuple each (nothing else is kept of an ended
        #: job unless its outcome is): (handle, Function, "complete"|"failed"|"exception", started_at, ended_at,
        #: the worker's Peer or None if it ended without a run, the first line of the exception's text)
        self.recent: deque[tuple[bytes, Function, str, float, float, Peer | None, bytes]] = deque(maxlen=RECENT_LIMIT)
        #: called with a job's function when the job becomes runnable while workers sleep (in the function's
        #: sleepers, or in wide_sleepers: the workers part's sleepers with many functions): it wakes one
        self.runnable: Callable[[Function], None] = lambda f: None
        self.wide_sleepers: dict[Peer, None] = {}  # the workers part gives its own
        self.functions: dict[bytes, Function] = {}
        self.jobs: dict[bytes, Job] = {}  # by handle: every job in the server (by unique: Function.uniques)
        # per priority, the functions that may have runnable jobs (a superset: emptied ones are dropped lazily)
        self.ready: tuple[dict[Function, None], ...] = ({}, {}, {})
        self.seq = itertools.count()  # tie-breaker for the heaps' entries
        self.epoch_heap: list[tuple[float, int, Job]] = []
        self.timeout_heap: list[tuple[float, int, Job, Peer, int]] = []
        self._epoch_limit = HEAP_FLOOR
        self._timeout_limit = HEAP_FLOOR
        # server-wide counters (per-function ones live on Function)
        self.submitted = 0
        self.completed = 0
        self.failed = 0
        self.exceptions = 0
        self.retried = 0
        self.timed_out = 0
        self.dropped = 0
        self.buried = 0

    def function(self, name: bytes) -> Function:
        """The Function record for NAME, created on first use."""
        f = self.functions.get(name)
        if f is None:
            f = self.functions[name] = Function(name)
            if self.default_policy is not None:
                self._apply(f)
        return f

    def set_policy(self, f: Function, policy: Policy | None, store: bool = True) -> None:
        """F's own policy (None: the server's); filed with the store unless STORE is False (read back from it)."""
        f.policy = policy
        self._apply(f)
        if store and self.committer is not None:
            self.committer.policy(f.name, policy.text() if policy is not None else "")

    def set_default_policy(self, policy: Policy | None) -> None:
        """The policy of every function without one of its own."""
        self.default_policy = policy
        for f in self.functions.values():
            self._apply(f)

    def _apply(self, f: Function) -> None:
        policy = f.policy if f.policy is not None else self.default_policy
        f.retry = policy if policy is not None and policy.retries else None
        f.keep = policy.keep if policy is not None else 0.0

    def new_handle(self) -> bytes:
        self.counter += 1
        return self.prefix + str(self.counter).encode()

    # ------------------------------------------------------------------ coming in

    def create(self, f: Function, unique: bytes, data: bytes, priority: int, background: bool,
               reducer: bytes = b"", when: int = 0, key: bytes | tuple[bytes] | None = None,
               client: Peer | None = None) -> Job:
        """A NEW job of F, indexed by its handle (and by KEY, its unique, for coalescing), CLIENT (if any) waiting
        for its result; place or pend it next."""
        self.counter += 1
        handle = self.prefix + str(self.counter).encode()
        job = self.job_class(handle, f, unique, data, priority, background, reducer, when)
        f.submitted += 1
        self.submitted += 1
        self.jobs[handle] = job
        if key is not None:
            f.uniques[key] = job
        if client is not None:
            job.clients = [client]
            client.as_client.waiting[job] = None
        return job

    def _place(self, job: Job, head: bool = False) -> None:
        """NEW -> QUEUED (at the HEAD of its queue if asked), or DELAYED for an epoch job whose time has not come.
        Also how commit, release and requeue queue a job."""
        if job.reduce_when is not None and job.when > self.now:
            self._delay(job)
            return
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
            self.runnable(f)

    place = _place  # the transition NEW -> QUEUED or DELAYED, as the handlers call it

    def admit_plain(self, f: Function, unique: bytes, data: bytes, priority: int, background: bool,
                    key: bytes | tuple[bytes] | None, peer: Peer) -> Job:
        """FAST PATH of Submitting.submit for the commonest submission (no reducer or run-at time, not to be stored;
        its unique, KEY, already looked for): what create, Outbox.send (its JOB_CREATED) and _place do for it,
        inline (their calls cost as much as their work); tests/server/test_fast_paths.py checks it against them."""
        self.counter += 1
        handle = self.prefix + str(self.counter).encode()
        job = self.job_class(handle, f, unique, data, priority, background)
        f.submitted += 1
        self.submitted += 1
        self.jobs[handle] = job
        if key is not None:
            f.uniques[key] = job
        if not background:
            job.clients = [peer]
            peer.as_client.waiting[job] = None
        if not peer.closed:
            out = peer.out
            if not out:
                self.out.dirty.append(peer)
            out.append(b"".join((JOB_CREATED_HEAD, len(handle).to_bytes(4, "big"), handle)))
        job.state = QUEUED
        job.queued_at = self.now
        f.queues[priority].append(job)
        queued = f.queued
        if not queued[priority]:
            self.ready[priority][f] = None
        queued[priority] += 1
        if f.sleepers or self.wide_sleepers:
            self.runnable(f)
        return job

    def pend(self, job: Job) -> None:
        """NEW -> PENDING: a background job waits for the durable store to commit it."""
        job.state = PENDING
        job.function.delayed[job.priority] += 1

    def commit(self, job: Job, store_key: bytes | None) -> None:
        """PENDING -> QUEUED or DELAYED: the store has it (under STORE_KEY, the key it may have generated)."""
        job.function.delayed[job.priority] -= 1
        job.store_key = store_key
        self._place(job)

    def refuse(self, job: Job) -> None:
        """PENDING -> DONE: the store refused the job, so it was never created (nor counted as submitted)."""
        f = job.function
        f.delayed[job.priority] -= 1
        f.submitted -= 1
        self.submitted -= 1
        job.state = DONE
        self._forget(job)

    def _delay(self, job: Job) -> None:
        job.state = DELAYED
        job.function.delayed[job.priority] += 1
        heap = self.epoch_heap
        heapq.heappush(heap, (job.when, next(self.seq), job))
        if len(heap) > self._epoch_limit:
            # cancelled epoch jobs stay in the heap until their time: drop them once they are half of it
            heap[:] = [e for e in heap if e[2].state == DELAYED]
            heapq.heapify(heap)
            self._epoch_limit = max(HEAP_FLOOR, 2 * len(heap))

    def release_due(self, now: float) -> None:
        """DELAYED -> QUEUED for every epoch job whose time has come by NOW."""
        heap = self.epoch_heap
        while heap and heap[0][0] <= now:
            job = heapq.heappop(heap)[2]
            if job.state == DELAYED:
                job.function.delayed[job.priority] -= 1
                self._place(job)  # its time has come: queued

    # ------------------------------------------------------------------ running

    def start_next(self, worker: Peer) -> Job | None:
        """QUEUED -> RUNNING: the next job for WORKER, if any: highest priority first across all its functions,
        round-robin among them, FIFO within one function's queue of a priority."""
        role = worker.as_worker
        funcs = role.funcs
        n = len(funcs)
        f: Function | None = None
        if n == 1:
            q = funcs[0].queued
            p = 0 if q[0] else 1 if q[1] else 2 if q[2] else -1
            if p < 0:
                return None
            f = funcs[0]
        elif n > MANY_FUNCTIONS:
            for p in (HIGH, NORMAL, LOW):
                f = self._next_ready(p, role.can)
                if f is not None:
                    break
            else:
                return None
        elif n:
            rr = role.rr
            for p in (HIGH, NORMAL, LOW):
                for i in range(n):
                    j = (rr + i) % n
                    if funcs[j].queued[p]:
                        f = funcs[j]
                        role.rr = (j + 1) % n
                        break
                if f is not None:
                    break
            else:
                return None
        else:
            return None
        # the first live job of F at priority P
        dq = f.queues[p]
        job = dq.popleft()
        while job.state != QUEUED:  # skip the lazily deleted
            job = dq.popleft()
        f.queued[p] -= 1
        job.state = RUNNING
        job.worker = worker
        now = self.now
        job.started_at = now
        wait = now - job.queued_at
        # queue-wait histogram: one float compare for the common "taken within a millisecond"
        f.wait_hist[0 if wait <= FIRST_BOUND else bisect_left(TIME_BUCKETS, wait)] += 1
        f.wait_sum += wait
        f.running += 1
        handle = job.handle
        role.jobs[handle] = job
        timeout = role.can[f]
        if timeout:
            if role.stale:
                role.stale.discard(handle)
            heap = self.timeout_heap
            heapq.heappush(heap, (now + timeout, next(self.seq), job, worker, job.retries))
            if len(heap) > self._timeout_limit:
                # finished jobs' deadlines stay in the heap until due: drop them once they are half of it
                heap[:] = [e for e in heap if e[2].state == RUNNING and e[2].worker is e[3] and e[2].retries == e[4]]
                heapq.heapify(heap)
                self._timeout_limit = max(HEAP_FLOOR, 2 * len(heap))
        return job

    def _next_ready(self, p: int, can: dict[Function, float]) -> Function | None:
        """A function with jobs of priority P among CAN's, from ``ready`` (for a worker with many functions: no
        walk of its own list); it moves to the back, so the functions take turns."""
        ready = self.ready[p]
        if not ready:
            return None
        empty = []
        found = None
        for f in ready:
            if not f.queued[p]:
                empty.append(f)
            elif f in can:
                found = f
                break
        for f in empty:
            del ready[f]
        if found is not None:
            del ready[found]
            ready[found] = None
        return found

    def _end_run(self, job: Job, ended: int) -> Peer:
        """Leave RUNNING: off its worker, which counts how the run ENDED (jobs.RAN_*: taken back, completed,
        failed); if the worker reported it (completed or failed; not: it left, it timed out), its run time goes
        into the run-time histogram. Returns the worker."""
        peer: Peer = job.worker  # type: ignore[assignment]
        worker = peer.as_worker
        handle = job.handle
        del worker.jobs[handle]
        worker.ran[ended] += 1
        if worker.progress:
            worker.progress.pop(handle, None)
        f = job.function
        if ended:
            ran = self.now - job.started_at
            f.run_hist[0 if ran <= FIRST_BOUND else bisect_left(TIME_BUCKETS, ran)] += 1
            f.run_sum += ran
        f.running -= 1
        job.worker = None
        return peer

    # ------------------------------------------------------------------ ending

    def complete(self, job: Job, result: bytes) -> None:
        """RUNNING -> DONE: WORK_COMPLETE with RESULT to every client."""
        f = job.function
        if self.fast and job.store_key is None and len(result) < BIG_PART:
            # FAST PATH (the common case: not stored, a small result): what _end_run, Outbox.send and _forget do
            # for it, inline, each of their calls costing as much as the work; the general path below is the rule,
            # and tests/server/test_fast_paths.py checks this copy against it
            peer: Peer = job.worker  # type: ignore[assignment]
            role = peer.as_worker
            handle = job.handle
            del role.jobs[handle]
            role.ran[RAN_COMPLETE] += 1
            if role.progress:
                role.progress.pop(handle, None)
            now = self.now
            ran = now - job.started_at
            f.run_hist[0 if ran <= FIRST_BOUND else bisect_left(TIME_BUCKETS, ran)] += 1
            f.run_sum += ran
            f.running -= 1
            job.worker = None
            f.completed += 1
            self.completed += 1
            job.state = DONE
            clients = job.clients
            if clients:
                packet = b"".join((WORK_COMPLETE_HEAD, (len(handle) + 1 + len(result)).to_bytes(4, "big"), handle,
                                   NUL, result))
                dirty = self.out.dirty
                for client in clients:
                    if not client.closed:
                        out = client.out
                        if not out:
                            dirty.append(client)
                        out.append(packet)
                    client.as_client.waiting.pop(job, None)
                job.clients = ()
            if f.keep and job.background:
                self._keep(job, "complete", result)
            self.recent.append((handle, f, "complete", job.started_at, now, peer, b""))
            if self.jobs.get(handle) is job:
                del self.jobs[handle]
            unique = job.unique
            if unique:
                key: Any = unique if unique != b"-" else (job.data,)
                if f.uniques.get(key) is job:
                    del f.uniques[key]
            return
        peer = self._end_run(job, RAN_COMPLETE)
        f.completed += 1
        self.completed += 1
        job.state = DONE
        clients = job.clients
        if clients:
            handle = job.handle
            size = (len(handle) + 1 + len(result)).to_bytes(4, "big")
            if len(result) >= BIG_PART:  # a big result goes out as its own part: written, never copied
                head = b"".join((WORK_COMPLETE_HEAD, size, handle, NUL))
                for client in clients:
                    self.out.send_parts(client, head, result)
            else:
                packet = b"".join((WORK_COMPLETE_HEAD, size, handle, NUL, result))
                send = self.out.send
                for client in clients:
                    send(client, packet)
        if f.keep and job.background:
            self._keep(job, "complete", result)
        self.recent.append((job.handle, f, "complete", job.started_at, self.now, peer, b""))
        self._forget(job)

    def raise_(self, job: Job, text: bytes) -> None:
        """RUNNING -> DONE: WORK_EXCEPTION with TEXT to the clients that asked for exceptions, WORK_FAIL to the rest.
        Under a retry policy with tries left: RUNNING -> DELAYED instead (``retry``)."""
        f = job.function
        if f.retry is not None and self.retry(job, "exception", text, True):
            return
        peer = self._end_run(job, RAN_FAILED)
        if job.clients:
            packet = pack_res(T.WORK_EXCEPTION, job.handle, text)
            fail = pack_res(T.WORK_FAIL, job.handle)
            for client in job.clients:
                self.out.send(client, packet if client.as_client.exceptions else fail)
        f.exceptions += 1
        self.exceptions += 1
        job.state = DONE
        if f.keep and job.background:
            self._keep(job, "exception", text)
        self.recent.append((job.handle, f, "exception", job.started_at, self.now, peer,
                            text[:RECENT_TEXT].partition(b"\n")[0]))
        self._forget(job)
        self._bury(job)  # after _forget: its queue row's delete is filed just before its burial

    def fail(self, job: Job, reported: bool = False) -> None:
        """QUEUED, DELAYED or RUNNING -> DONE: WORK_FAIL to every client (REPORTED: its worker sent WORK_FAIL; then,
        under a retry policy with tries left, RUNNING -> DELAYED instead: ``retry``)."""
        if reported and job.function.retry is not None and self.retry(job, "failed", b"", True):
            return
        self._failed(job, self._leave(job, reported))
        if reported:
            self._bury(job)

    def drop(self, job: Job) -> None:
        """QUEUED, DELAYED or RUNNING -> DONE without a word to anyone: no client wants it any more (as gearmand)."""
        self._leave(job, False)
        self._dropped(job)

    def _failed(self, job: Job, peer: Peer | None = None) -> None:
        """-> DONE as failed: WORK_FAIL to every client; PEER is the worker whose run ended so, if one did."""
        if job.clients:
            packet = pack_res(T.WORK_FAIL, job.handle)
            for client in job.clients:
                self.out.send(client, packet)
        f = job.function
        f.failed += 1
        self.failed += 1
        job.state = DONE
        if f.keep and job.background:
            self._keep(job, "failed", b"")
        self.recent.append((job.handle, f, "failed", job.started_at, self.now, peer, b""))
        self._forget(job)
        self._compact(job)

    def _dropped(self, job: Job) -> None:
        job.state = DONE
        self.dropped += 1
        self._forget(job)
        self._compact(job)

    def requeue(self, job: Job, why: str) -> None:
        """RUNNING -> QUEUED at the head of its queue: its worker left or timed out. A foreground job nobody
        waits for any more is dropped instead, and one that has had its -j tries fails. Under a retry policy
        it is a failed try instead: ``retry`` (-j is gearmand's rule for functions without one)."""
        f = job.function
        if self._under_policy(job):
            if not self.retry(job, "worker lost" if why == "worker disconnected" else why, why.encode(), False):
                self._failed(job, self._end_run(job, RAN_TAKEN_BACK))
                self._bury(job)  # its tries are spent
            return
        peer = self._end_run(job, RAN_TAKEN_BACK)
        job.retries += 1
        if not job.clients and not job.background:
            self._dropped(job)
            return
        if self.job_retries > 0 and job.retries >= self.job_retries:
            self.notice(f"Dropped job due to max retry count: {job.handle.decode(errors='replace')} "
                        f"{f.name.decode(errors='replace')} after {job.retries} tries ({why})",
                        event="job_dropped", function=f.name, handle=job.handle, peer=peer.host, fd=peer.fd,
                        tries=job.retries, reason=why)
            self._failed(job, peer)
            return
        f.retried += 1
        self.retried += 1
        self._place(job, head=True)

    def expire_due(self, now: float) -> None:
        """Take back every running job whose worker's CAN_DO_TIMEOUT ran out by NOW (requeue, or fail)."""
        heap = self.timeout_heap
        while heap and heap[0][0] <= now:
            _, _, job, worker, retries = heapq.heappop(heap)
            if job.state == RUNNING and job.worker is worker and job.retries == retries:
                self._time_out(job, worker)

    def _time_out(self, job: Job, worker: Peer) -> None:
        role = worker.as_worker
        f = job.function
        role.stale.add(job.handle)  # its late result is ignored quietly
        if len(role.stale) > STALE_LIMIT:
            role.stale.pop()
        f.timeouts += 1
        self.timed_out += 1
        self.notice(f"Job {job.handle.decode(errors='replace')} of {f.name.decode(errors='replace')} timed out "
                    f"after {role.can.get(f, 0):g}s on worker {worker.host} fd {worker.fd}",
                    event="job_timed_out", function=f.name, handle=job.handle, peer=worker.host, fd=worker.fd)
        if self.job_retries > 0 or self._under_policy(job):
            self.requeue(job, "timed out")
        else:
            self.fail(job)

    def retry(self, job: Job, how: str, text: bytes, reported: bool) -> bool:
        """A try of running JOB failed (HOW: failed, exception, worker lost, timed out; TEXT: what it said). Under
        its function's retry policy the try is recorded, and if tries are left the job waits (RUNNING -> DELAYED)
        for its next one after the policy's delay: True. False: no policy for it, or its tries are spent (the
        caller ends it, which files it in the registry)."""
        f = job.function
        policy = f.retry
        if not self._under_policy(job):
            return False
        worker = job.worker
        history = job.history
        if history is None:
            history = job.history = []
        history.append(Try(job.started_at, self.now, f"{worker.host} fd {worker.fd}" if worker is not None else "",
                           how, text))
        if len(history) >= policy.tries:
            return False
        self._end_run(job, RAN_FAILED if reported else RAN_TAKEN_BACK)
        job.retries += 1  # also makes its CAN_DO_TIMEOUT deadline of this run stale
        when = self.now + policy.delay_before(len(history) + 1)
        job.reduce_when = (job.reducer, when)  # type: ignore[assignment]
        f.retried += 1
        self.retried += 1
        self._delay(job)
        if job.store_key is not None:
            self.committer.retry(Retry(job.store_id, when, len(history), Try.encode_all(history)))
        return True

    @staticmethod
    def _under_policy(job: Job) -> bool:
        """Whether JOB's failures follow its function's retry policy: a background job, or a foreground one
        when the policy says foreground=yes (by default a foreground client decides for itself)."""
        policy = job.function.retry
        return policy is not None and (job.background or policy.foreground)

    def _bury(self, job: Job) -> None:
        """A job under a retry policy whose tries are spent goes into the failed-job registry (with a durable
        store: in the same settlement as the delete of its queue row, filed by _forget)."""
        history = job.history
        if history is None or job.function.retry is None:
            return
        f = job.function
        f.buried += 1
        self.buried += 1
        failed = self.failed_jobs.add(job.handle, f.name, job.unique, job.data, job.priority, job.background,
                                      self.now, Try.encode_all(history))
        last = history[-1]
        self.notice(f"Job {job.handle.decode(errors='replace')} of {f.name.decode(errors='replace')} failed "
                    f"{len(history)} tries (the last: {last.how}); filed in the failed-job registry as {failed.id}",
                    event="job_buried", function=f.name, handle=job.handle, peer=last.worker or None,
                    tries=len(history), failed_id=failed.id)

    def _keep(self, job: Job, outcome: str, data: bytes) -> None:
        """Keep how background JOB ended for its function's ``keep`` seconds."""
        now = self.now
        tries = 1 + len(job.history) if job.history else 1
        self.kept.add(KeptResult(job.handle, job.function.name, job.unique, outcome, data, now,
                                 now + job.function.keep, tries))

    def _leave(self, job: Job, reported: bool) -> Peer | None:
        """Undo what the job's current state counts (before it becomes DONE); REPORTED: its worker said it failed
        (else a running job is taken back from it). Returns the worker of a running job."""
        state = job.state
        if state == QUEUED:
            job.function.queued[job.priority] -= 1
        elif state == DELAYED:
            job.function.delayed[job.priority] -= 1
        elif state == RUNNING:
            return self._end_run(job, RAN_FAILED if reported else RAN_TAKEN_BACK)
        return None

    def _compact(self, job: Job) -> None:
        """Drop the dead entries lazy deletion left in a job's queue once they outnumber the live ones (amortized
        O(1)). Without it, clients that submit and leave while no worker drains the queue grow it without bound
        (found by the 100,000-round connect/submit/disconnect test in tests/server/test_faults.py)."""
        f = job.function
        p = job.priority
        dq = f.queues[p]
        if len(dq) > 64 and len(dq) > 2 * f.queued[p]:
            live = [j for j in dq if j.state == QUEUED]
            dq.clear()
            dq.extend(live)

    def _forget(self, job: Job) -> None:
        """A job that ended leaves every index (and the durable store), and its clients stop waiting for it."""
        handle = job.handle
        if self.jobs.get(handle) is job:
            del self.jobs[handle]
        unique = job.unique
        if unique:
            key: Any = unique if unique != b"-" else (job.data,)
            uniques = job.function.uniques
            if uniques.get(key) is job:
                del uniques[key]
        clients = job.clients
        if clients:
            for client in clients:
                client.as_client.waiting.pop(job, None)
            job.clients = ()
        if job.store_key is not None:
            self.committer.done(job.store_id)
            job.store_key = None

    # ------------------------------------------------------------------ clients

    def attach(self, job: Job, client: Peer) -> None:
        """CLIENT waits for JOB's result (a foreground submission, or one that joined JOB by its unique)."""
        if job.clients:
            job.clients.append(client)  # type: ignore[union-attr]
        else:
            job.clients = [client]
        client.as_client.waiting[job] = None

    def detach(self, job: Job, client: Peer) -> None:
        """CLIENT left: it waits no more. A queued foreground job nobody else waits for is dropped (as gearmand)."""
        job.clients = [c for c in job.clients if c is not client]
        if not job.clients and not job.background and job.state in (QUEUED, DELAYED):
            self.drop(job)
