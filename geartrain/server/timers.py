"""Timers: when the job logic next has something to do, and doing it; and cron schedules (SUBMIT_JOB_SCHED).

Each timer kind is a heap: epoch jobs (and jobs waiting for their next try) and CAN_DO_TIMEOUT
deadlines in the lifecycle, the expiry of kept results in its ``kept``, unanswered wake-ups in the
workers part, cron schedules here (``Schedule``). ``next_wakeup`` gives the earliest
due time and the app calls ``tick(now)`` then. Entries of jobs that ended meanwhile are skipped (lazy
deletion).
"""

from __future__ import annotations

import heapq
from functools import partial
from typing import Any

from ..protocol.codec import error_packet, pack_res
from ..protocol.packets import MAX_UNIQUE_SIZE, NORMAL, ErrorCode, T
from .jobs import Function, Peer
from .lifecycle import Lifecycle
from .outbox import Hold, Outbox
from .replies import UNIQUE_TOO_LARGE
from .schedule import Cron, CronError
from .store.base import StoredJob
from .submitting import Submitting, queue_error
from .workers import Workers, refused


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
    """The server's timed work, and the cron schedules."""

    def __init__(self, life: Lifecycle, out: Outbox, workers: Workers, submitting: Submitting) -> None:
        self.life = life
        self.out = out
        self.workers = workers
        self.submitting = submitting
        self.sched_heap: list[tuple[float, int, Schedule]] = []
        self.schedules: dict[bytes, Schedule] = {}  # by handle
        self.schedule_keys: dict[tuple[bytes, bytes], Schedule] = {}

    def next_wakeup(self) -> float | None:
        """When tick() next has something to do (epoch seconds), or None."""
        t = None
        life = self.life
        for heap in (life.epoch_heap, life.timeout_heap, self.sched_heap, self.workers.wake_heap, life.kept.expiry):
            if heap and (t is None or heap[0][0] < t):
                t = heap[0][0]
        return t

    def tick(self, now: float) -> None:
        """Run the timers due at NOW: epoch jobs (and jobs waiting for their next try) become runnable, timed-out
        jobs come back, cron runs fire, unanswered wake-ups are passed on, kept results expire."""
        life = self.life
        life.now = now
        life.release_due(now)
        life.expire_due(now)
        heap = self.sched_heap
        while heap and heap[0][0] <= now:
            sched = heapq.heappop(heap)[2]
            if sched.active:
                self._fire(sched, now)
        if self.workers.wake_heap:
            self.workers.pass_wakeups(now)
        if life.kept.expiry:
            life.kept.expire(now)

    # ------------------------------------------------------------------ cron schedules

    def sched_packet(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        name, unique, minute, hour, mday, month, wday, data = args
        if len(unique) > MAX_UNIQUE_SIZE:
            self.out.send(peer, UNIQUE_TOO_LARGE)
            return
        try:
            cron = Cron.parse(minute, hour, mday, month, wday)
            cron.next_after(self.life.now)
        except CronError as exc:
            self.out.send(peer, error_packet(ErrorCode.INVALID_ARGUMENT, str(exc).encode()))
            return
        acl = self.submitting.acl
        if acl is not None and refused(self.out, acl, peer, "submit", name):
            return
        self.schedule(peer, name, unique, data, NORMAL, cron)

    def schedule(self, peer: Peer | None, name: bytes, unique: bytes, data: bytes, priority: int, cron: Cron,
                 stored: bool = False) -> Schedule:
        """Add a recurring job (or return the one with the same function and unique)."""
        if unique:
            old = self.schedule_keys.get((name, unique))
            if old is not None:
                if peer is not None:
                    self.out.send(peer, pack_res(T.JOB_CREATED, old.handle))
                return old
        f = self.life.function(name)
        sched = Schedule(self.life.new_handle(), f, unique, data, priority, cron)
        self.schedules[sched.handle] = sched
        if unique:
            self.schedule_keys[(name, unique)] = sched
        committer = self.submitting.committer
        if committer is not None and not stored and peer is not None:
            sched.stored = True
            record = StoredJob(name, unique, data, priority, 0, b"", cron.text.encode())
            sched.skey = record
            committer.add(record, partial(self._sched_committed, sched, peer, self.out.hold(peer)))
        else:
            sched.stored = stored
            if peer is not None:
                self.out.send(peer, pack_res(T.JOB_CREATED, sched.handle))
        self._arm(sched, self.life.now)
        return sched

    def _sched_committed(self, sched: Schedule, peer: Peer, hold: Hold, error: str | None) -> None:
        if error is None:
            self.out.resolve(peer, hold, pack_res(T.JOB_CREATED, sched.handle))
        else:
            sched.stored = False
            self.unschedule(sched)
            self.out.resolve(peer, hold, queue_error(error))

    def _arm(self, sched: Schedule, now: float) -> None:
        sched.next = sched.cron.next_after(now)
        heapq.heappush(self.sched_heap, (sched.next, next(self.life.seq), sched))

    def _fire(self, sched: Schedule, now: float) -> None:
        sched.runs += 1
        self.submitting.submit(sched.priority, True, None, (sched.function.name, sched.unique, sched.data))
        self._arm(sched, now)

    def unschedule(self, sched: Schedule) -> None:
        sched.active = False
        self.schedules.pop(sched.handle, None)
        key = (sched.function.name, sched.unique)
        if self.schedule_keys.get(key) is sched:
            del self.schedule_keys[key]
        if sched.stored:
            sched.stored = False
            self.submitting.committer.done(sched.skey.key)
