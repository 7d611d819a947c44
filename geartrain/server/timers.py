"""Timers: epoch jobs, CAN_DO_TIMEOUT deadlines and cron schedules (SUBMIT_JOB_SCHED).

A part of State (a mixin: every method works on the State's attributes), plus the ``Schedule``
record. Each timer kind is a heap; ``next_wakeup`` gives the earliest time and the app calls
``tick(now)`` then. Entries of jobs that ended meanwhile are skipped (lazy deletion).
"""

from __future__ import annotations

import heapq
from functools import partial
from typing import Any

from ..protocol.codec import error_packet, pack_res
from ..protocol.packets import MAX_UNIQUE_SIZE, NORMAL, ErrorCode
from .jobs import DELAYED, RUNNING, Function, Hold, Job, Peer
from .replies import FAILED, JOB_CREATED, UNIQUE_TOO_LARGE
from .schedule import Cron, CronError
from .store.base import StoredJob


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


class Timers:
    """Epoch jobs, CAN_DO_TIMEOUT deadlines and cron schedules.

    A part of State: it works on State's three heaps, ``schedules``/``schedule_keys`` and the
    ``committer``, and calls ``submit``, ``_enqueue``, ``_retry`` and ``_end``."""

    def next_wakeup(self) -> float | None:
        """When tick() next has something to do (epoch seconds), or None."""
        t = None
        for heap in (self.epoch_heap, self.timeout_heap, self.sched_heap, self.wake_heap):
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
        if self.wake_heap:
            self.pass_wakeups(now)

    def _timeout(self, job: Job, peer: Peer) -> None:
        """A worker ran past its CAN_DO_TIMEOUT: take the job back; its late result will be ignored."""
        f = job.function
        del peer.jobs[job.handle]
        peer.progress.pop(job.handle, None)
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

    def _submit_sched(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        name, unique, minute, hour, mday, month, wday, data = args
        if len(unique) > MAX_UNIQUE_SIZE:
            self.send(peer, UNIQUE_TOO_LARGE)
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
                    self.send(peer, pack_res(JOB_CREATED, old.handle))
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
                self.send(peer, pack_res(JOB_CREATED, sched.handle))
        self._arm(sched, self.now)
        return sched

    def _sched_committed(self, sched: Schedule, peer: Peer, hold: Hold, error: str | None) -> None:
        if error is None:
            self._resolve(peer, hold, pack_res(JOB_CREATED, sched.handle))
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
