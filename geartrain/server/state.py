"""The job server's logic as one object: the parts put together, the dispatch table, and what spans them.

Driven by ``State.dispatch[ptype](peer, args)`` for each parsed packet, ``State.tick(now)`` for timers
(epoch jobs, CAN_DO_TIMEOUT, cron schedules, unanswered wake-ups) and ``State.connect/disconnect`` for
connections. Replies go to each peer's output through the ``Outbox``; the connection layer writes
them. There is no asyncio, no socket and no clock in here: the caller sets ``State.now`` (epoch
seconds).

The parts, bottom-up (each uses only those above it in this list, handed to it when it is made):

* ``outbox.Outbox``: each peer's output and the peers with output;
* ``lifecycle.Lifecycle``: every job, its state and every counter and index that follows from it;
  the only code that changes ``job.state``;
* ``workers.Workers``: CAN_DO and friends, sleeping and waking, GRAB_JOB* (the lifecycle's
  ``runnable`` hook is its wake-up);
* ``submitting.Submitting``: SUBMIT_JOB*, coalescing, the durable store's commit;
* ``results.Results``: WORK_* packets;
* ``timers.Timers``: the timed work and cron schedules;
* ``State`` (here): the dispatch table, the packets that belong to no part (echo, options, status),
  connections coming and going, and the admin operations.

Cost per submit, grab and result is O(1) in the queue depth: one deque per (function, priority),
lazy deletion for cancelled or abandoned jobs, a heap for epoch jobs and for timeouts.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from ..protocol.codec import pack_res
from ..protocol.packets import HIGH, LOW, MAX_HANDLE_SIZE, MAX_TYPE, MAX_UNIQUE_SIZE, NORMAL, SUBMIT_KINDS, T
from .jobs import DELAYED, DONE, QUEUED, RUNNING, STATE_NAMES, Function, Job, Peer
from .lifecycle import Lifecycle
from .outbox import Outbox
from .policy import PolicyError
from .policy import parse as policy_parse
from .replies import HANDLE_TOO_LARGE, NOT_EXPECTED, UNIQUE_TOO_LARGE, UNKNOWN_OPTION, atoi
from .results import Results
from .schedule import Cron, CronError
from .store.base import Extras, FailedJob, KeptResult, Try
from .submitting import Submitting
from .timers import Schedule, Timers
from .workers import Acl, Workers


class State:
    """Every job, function and connection of one server, and what to do with each packet."""

    def __init__(
        self,
        *,
        handle_prefix: bytes = b"H:geartrain",
        job_retries: int = 0,
        worker_wakeup: int = 1,
        exceptions: bool = False,
        notice: Callable[..., None] | None = None,
        now: float = 0.0,
        defer_no_job: bool = False,
        grab_wait: float = 0.0,
        wake_timeout: float = 0.0,
    ) -> None:
        self.outbox = Outbox()
        self.life = Lifecycle(prefix=handle_prefix, out=self.outbox, job_retries=job_retries, notice=notice,
                              now=now)
        self.workers = Workers(self.life, self.outbox, worker_wakeup=worker_wakeup, defer_no_job=defer_no_job,
                               grab_wait=grab_wait, wake_timeout=wake_timeout)
        self.submitting = Submitting(self.life, self.outbox)
        self.results = Results(self.life, self.outbox)
        self.timers = Timers(self.life, self.outbox, self.workers, self.submitting)
        self.exceptions_default = exceptions
        self.functions: dict[bytes, Function] = self.life.functions
        self.jobs: dict[bytes, Job] = self.life.jobs  # by handle: every job in the server
        self.peers: dict[int, Peer] = {}
        self.next_peer_id = 0
        #: admin text line handler, set by the app: text(peer, line)
        self.text: Callable[[Peer, bytes], None] = lambda peer, line: None
        self.dispatch = self._build_dispatch()
        # the parts' entry points the connection layer and the app call
        self.send = self.outbox.send
        self.take_output = self.outbox.take
        self.tick = self.timers.tick
        self.next_wakeup = self.timers.next_wakeup
        self.retry_grabs = self.workers.retry_grabs
        self.submit = self.submitting.submit
        self.jobs_committed = self.submitting.jobs_committed
        self.function = self.life.function

    # ------------------------------------------------------------------ settings shared by the parts

    @property
    def now(self) -> float:
        """The time the job logic sees (epoch seconds), set by the caller per read and per timer tick."""
        return self.life.now

    @now.setter
    def now(self, value: float) -> None:
        self.life.now = value

    @property
    def acl(self) -> Acl | None:
        """ACL hook, called as acl(peer, action, name) -> bool on submit and can_do; None allows everything."""
        return self.submitting.acl

    @acl.setter
    def acl(self, hook: Acl | None) -> None:
        self.submitting.acl = hook
        self.workers.acl = hook

    @property
    def committer(self) -> Any:
        """The durable store's group commit (group.GroupCommit), None with the memory store."""
        return self.submitting.committer

    @committer.setter
    def committer(self, committer: Any) -> None:
        self.submitting.committer = committer
        self.life.committer = committer
        self.life.kept.committer = committer
        self.life.failed_jobs.committer = committer

    @property
    def draining(self) -> bool:
        """Graceful shutdown: hand out no new jobs."""
        return self.workers.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self.workers.draining = value

    # server-wide counters, kept by the lifecycle
    submitted = property(lambda self: self.life.submitted)
    completed = property(lambda self: self.life.completed)
    failed = property(lambda self: self.life.failed)
    exceptions = property(lambda self: self.life.exceptions)
    retried = property(lambda self: self.life.retried)
    timed_out = property(lambda self: self.life.timed_out)
    dropped = property(lambda self: self.life.dropped)
    buried = property(lambda self: self.life.buried)
    schedules = property(lambda self: self.timers.schedules)
    prefix = property(lambda self: self.life.prefix)  # of job handles, with its ":"

    # ------------------------------------------------------------------ plumbing

    def _build_dispatch(self) -> list[Callable[[Peer, tuple[bytes, ...]], None]]:
        workers, submitting, results = self.workers, self.submitting, self.results
        table: list[Callable[[Peer, tuple[bytes, ...]], None]] = [self._not_expected] * (MAX_TYPE + 1)
        table[0] = self._text
        table[T.CAN_DO] = workers.can_do_packet
        table[T.CANT_DO] = workers.cant_do_packet
        table[T.RESET_ABILITIES] = workers.reset_abilities_packet
        table[T.PRE_SLEEP] = workers.pre_sleep_packet
        table[T.CAN_DO_TIMEOUT] = workers.can_do_timeout_packet
        for grab, assign in ((T.GRAB_JOB, T.JOB_ASSIGN), (T.GRAB_JOB_UNIQ, T.JOB_ASSIGN_UNIQ),
                             (T.GRAB_JOB_ALL, T.JOB_ASSIGN_ALL)):
            table[grab] = partial(workers.grab_packet, assign)
        table[T.WORK_STATUS] = results.status_packet
        table[T.WORK_COMPLETE] = results.complete_packet
        table[T.WORK_FAIL] = results.fail_packet
        table[T.WORK_EXCEPTION] = results.exception_packet
        table[T.WORK_DATA] = partial(results.forward_packet, T.WORK_DATA)
        table[T.WORK_WARNING] = partial(results.forward_packet, T.WORK_WARNING)
        for ptype in (T.SUBMIT_JOB, T.SUBMIT_JOB_BG, T.SUBMIT_JOB_HIGH, T.SUBMIT_JOB_HIGH_BG, T.SUBMIT_JOB_LOW,
                      T.SUBMIT_JOB_LOW_BG):
            priority, background = SUBMIT_KINDS[ptype]
            table[ptype] = partial(submitting.submit, priority, background)
        table[T.SUBMIT_JOB_EPOCH] = submitting.epoch_packet
        table[T.SUBMIT_JOB_SCHED] = self.timers.sched_packet
        table[T.SUBMIT_REDUCE_JOB] = partial(submitting.reduce_packet, False)
        table[T.SUBMIT_REDUCE_JOB_BACKGROUND] = partial(submitting.reduce_packet, True)
        table[T.GET_STATUS] = self._get_status
        table[T.GET_STATUS_UNIQUE] = self._get_status_unique
        table[T.ECHO_REQ] = self._echo
        table[T.SET_CLIENT_ID] = self._set_client_id
        table[T.OPTION_REQ] = self._option
        return table

    def connect(self, fd: int = -1, host: str = "-") -> Peer:
        """A new connection: its Peer, to pass to every dispatch call for it."""
        self.next_peer_id += 1
        peer = Peer(self.next_peer_id, fd, host, self.exceptions_default)
        self.peers[peer.id] = peer
        return peer

    # ------------------------------------------------------------------ packets of no part

    def _not_expected(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        self.outbox.send(peer, NOT_EXPECTED)

    def _text(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        self.text(peer, args[0])

    def _echo(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        self.outbox.send(peer, pack_res(T.ECHO_RES, args[0]))

    def _set_client_id(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        peer.client_id = args[0][:127] or b"-"

    def _option(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        if args[0].lower() == b"exceptions":
            peer.as_client.exceptions = True
            self.outbox.send(peer, pack_res(T.OPTION_RES, args[0]))
        else:
            self.outbox.send(peer, UNKNOWN_OPTION)

    # ------------------------------------------------------------------ status

    def _get_status(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        handle = args[0]
        if len(handle) > MAX_HANDLE_SIZE:
            self.outbox.send(peer, HANDLE_TOO_LARGE)
            return
        job = self.jobs.get(handle)
        if job is None or job.state == DONE:
            self.outbox.send(peer, pack_res(T.STATUS_RES, handle, b"0", b"0", b"0", b"0"))
            return
        self.outbox.send(peer, pack_res(T.STATUS_RES, handle, b"1", b"1" if job.state == RUNNING else b"0",
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
            self.outbox.send(peer, UNIQUE_TOO_LARGE)
            return
        job = self.find_unique(unique)
        if job is None:
            self.outbox.send(peer, pack_res(T.STATUS_RES_UNIQUE, unique, b"0", b"0", b"0", b"0", b"0"))
            return
        self.outbox.send(peer, pack_res(T.STATUS_RES_UNIQUE, unique, b"1", b"1" if job.state == RUNNING else b"0",
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
        woken_for = self.workers.leave(peer)
        running = peer.as_worker.jobs
        if running:
            for job in list(running.values()):
                self.life.requeue(job, "worker disconnected")
        waiting = peer.as_client.waiting
        if waiting:
            peer.as_client.waiting = {}
            for job in waiting:
                self.life.detach(job, peer)
        if woken_for is not None and woken_for.has_runnable():
            # it was woken for work it will not do now: wake someone else
            self.workers.wake(woken_for, 1)

    # ------------------------------------------------------------------ admin operations

    def cancel(self, handle: bytes) -> bool:
        """Admin `cancel job`: drop a queued (not running) job, WORK_FAIL to its clients. False if unknown."""
        sched = self.timers.schedules.get(handle)
        if sched is not None:
            self.timers.unschedule(sched)
            return True
        job = self.jobs.get(handle)
        if job is None or job.state not in (QUEUED, DELAYED):
            return False
        self.life.fail(job)
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
                    self.life.fail(job)
            f.queues[p].clear()
        for job in list(self.jobs.values()):
            if job.function is f and job.state == DELAYED:
                self.life.fail(job)
        for sched in list(self.timers.schedules.values()):
            if sched.function is f:
                self.timers.unschedule(sched)
        del self.functions[name]
        return "ok"

    def restore(self, stored: Any) -> Job | Schedule | None:
        """Queue a job read back from the durable store at start (a StoredJob)."""
        if stored.schedule:
            try:
                cron = Cron.parse(*stored.schedule.split(b" "))
            except (CronError, TypeError):
                self.life.notice(f"Ignoring stored schedule with a bad spec: {stored.schedule!r}",
                                 event="schedule_ignored", function=stored.function, unique=stored.unique)
                return None
            sched = self.timers.schedule(None, stored.function, stored.unique, stored.data, stored.priority, cron,
                                         stored=True)
            sched.skey = stored
            return sched
        priority = stored.priority if stored.priority in (HIGH, NORMAL, LOW) else NORMAL
        job = self.submitting.submit(priority, True, None, (stored.function, stored.unique, stored.data),
                                     reducer=stored.reducer, when=stored.when)
        if job is not None:
            if job.store_key is None:
                job.store_key = stored.store_key  # the key, not the record: a million replayed jobs keep no StoredJob
            if stored.tries:
                job.history = Try.decode_all(stored.history)  # type: ignore[assignment]
                job.retries = stored.tries
        return job

    def restore_extras(self, extras: Extras) -> None:
        """What the durable store keeps besides the queue, read back at start: the policies it was told (a function
        named by --policy keeps that one), the kept results and the failed-job registry. Handles count on past
        the highest kept or failed one, so no new job takes the handle of an old one."""
        life = self.life
        for name, text in extras.policies.items():
            f = life.function(name)
            if f.policy is None and text:
                try:
                    life.set_policy(f, policy_parse(text, life.default_policy), store=False)
                except PolicyError as exc:
                    life.notice(f"Ignoring the stored policy of {name.decode(errors='replace')}: {exc}")
        life.kept.load(extras.kept, life.now)
        life.failed_jobs.load(extras.failed)
        prefix = life.prefix
        for handle in [r.handle for r in extras.kept] + [f.handle for f in extras.failed]:
            if handle.startswith(prefix):
                life.counter = max(life.counter, _counter(handle))

    # ------------------------------------------------------------------ what outlives a job

    def outcome(self, key: bytes) -> tuple[str, Job | None, KeptResult | None]:
        """What became of the job with handle (or unique) KEY: its state's name and the job while the server
        holds it; "complete", "failed" or "exception" and the kept result once it ended (if its outcome is kept);
        "unknown" otherwise. A job waiting for its next try is "waiting"."""
        job = self.jobs.get(key) or self.find_unique(key)
        if job is not None and job.state != DONE:
            if job.state == DELAYED and job.history:
                return "waiting", job, None
            return STATE_NAMES[job.state], job, None
        kept = self.life.kept.get(key, self.life.now)
        if kept is not None:
            return kept.outcome, None, kept
        return "unknown", None, None

    def requeue_failed(self, target: bytes | list[FailedJob]) -> tuple[int, int]:
        """Queue again, as new background jobs, the failed jobs TARGET names (``all``, an id, a function, as the
        admin command takes it; or the entries themselves): how many were, and how many could not be because
        their payload was cut (they stay in the registry)."""
        done = refused = 0
        for failed in self.life.failed_jobs.select(target) if isinstance(target, bytes) else target:
            if failed.size > len(failed.data):
                refused += 1
                continue
            self.submitting.submit(failed.priority, True, None, (failed.function, failed.unique, failed.data),
                                   store=True)
            self.life.failed_jobs.remove(failed.id)
            done += 1
        return done, refused

    def discard_failed(self, target: bytes | list[FailedJob]) -> int:
        """Forget the failed jobs TARGET names (``all``, an id, a function; or the entries themselves); how many."""
        chosen = self.life.failed_jobs.select(target) if isinstance(target, bytes) else target
        for failed in chosen:
            self.life.failed_jobs.remove(failed.id)
        return len(chosen)


def _counter(handle: bytes) -> int:
    """The N of a handle PREFIX:N (its creation order)."""
    tail = handle.rpartition(b":")[2]
    return int(tail) if tail.isdigit() else 0


def valid_prefix(prefix: bytes) -> bool:
    """Whether handles PREFIX:N stay within gearmand's 64 bytes for any 32-bit counter N."""
    return len(prefix) + 1 + 10 <= MAX_HANDLE_SIZE


__all__ = ["State", "Schedule", "atoi", "valid_prefix"]
