"""What outlives a job: the kept outcomes of background jobs, and the registry of failed jobs.

``KeptResults`` holds how background jobs ended (their WORK_COMPLETE data, their failure, their
WORK_EXCEPTION text) for their function's ``keep`` seconds, to be fetched by handle or by unique;
bounded in count and bytes, the oldest going first. ``FailedJobs`` is the registry of jobs whose
tries are spent (dead letters): each with its payload (cut beyond a limit), every try's error and
the times, bounded in count, the oldest going first, until it is requeued or discarded.

Both are plain memory, the one copy the server reads; with a durable store every change is also
filed with the group commit (``committer``) so that a restart finds them again (``load``).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from typing import Any

from .store.base import FailedJob, KeptResult


class KeptResults:
    """Outcomes of background jobs after they ended, by handle and by unique, until they expire."""

    def __init__(self, max_count: int = 100_000, max_bytes: int = 64 << 20) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.committer: Any = None  # group.GroupCommit with a durable store
        self.by_handle: OrderedDict[bytes, KeptResult] = OrderedDict()  # oldest first
        self.by_unique: dict[bytes, bytes] = {}  # unique -> handle of the newest result with it
        self.expiry: list[tuple[float, bytes]] = []  # (expires, handle), a heap; stale entries are skipped
        self.bytes = 0
        self.evicted = 0  # dropped early to stay within max_count / max_bytes
        self.expired = 0

    def __len__(self) -> int:
        return len(self.by_handle)

    def add(self, result: KeptResult, store: bool = True) -> None:
        """Keep RESULT (replacing one with its handle), then drop the oldest beyond the bounds."""
        old = self.by_handle.pop(result.handle, None)
        if old is not None:
            self.bytes -= len(old.data)
        self.by_handle[result.handle] = result
        self.bytes += len(result.data)
        if result.unique:
            self.by_unique[result.unique] = result.handle
        heapq.heappush(self.expiry, (result.expires, result.handle))
        if store and self.committer is not None:
            self.committer.keep(result)
        while self.by_handle and (len(self.by_handle) > self.max_count or self.bytes > self.max_bytes):
            self._drop(next(iter(self.by_handle)))
            self.evicted += 1

    def get(self, key: bytes, now: float) -> KeptResult | None:
        """The result with handle KEY, else the newest with unique KEY; None if none is kept (or it expired)."""
        self.expire(now)
        found = self.by_handle.get(key)
        if found is None:
            handle = self.by_unique.get(key)
            found = self.by_handle.get(handle) if handle is not None else None
        return found

    def expire(self, now: float) -> None:
        """Drop every result whose time is up by NOW."""
        heap = self.expiry
        while heap and heap[0][0] <= now:
            expires, handle = heapq.heappop(heap)
            result = self.by_handle.get(handle)
            if result is not None and result.expires == expires:
                self._drop(handle)
                self.expired += 1

    def next_expiry(self) -> float | None:
        return self.expiry[0][0] if self.expiry else None

    def _drop(self, handle: bytes) -> None:
        result = self.by_handle.pop(handle)
        self.bytes -= len(result.data)
        if result.unique and self.by_unique.get(result.unique) == handle:
            del self.by_unique[result.unique]
        if self.committer is not None:
            self.committer.unkeep(handle)

    def load(self, results: list[KeptResult], now: float) -> None:
        """Results read back from the store at start (not filed again); the expired ones are dropped."""
        for result in sorted(results, key=lambda r: r.ended):
            self.add(result, store=False)
        self.expire(now)


class FailedJobs:
    """The failed-job registry: jobs whose tries are spent, oldest first, by id."""

    def __init__(self, max_count: int = 10_000, max_payload: int = 1 << 20) -> None:
        self.max_count = max_count
        self.max_payload = max_payload  # bytes of a payload kept; a longer one is cut (and cannot be requeued)
        self.committer: Any = None  # group.GroupCommit with a durable store
        self.jobs: OrderedDict[int, FailedJob] = OrderedDict()
        self.next_id = 1
        self.dropped = 0  # the oldest, dropped to stay within max_count
        self.added = 0

    def __len__(self) -> int:
        return len(self.jobs)

    def add(self, handle: bytes, function: bytes, unique: bytes, data: bytes, priority: int, background: bool,
            failed_at: float, history: bytes) -> FailedJob:
        """Register a job whose tries are spent; the oldest beyond max_count goes."""
        failed = FailedJob(self.next_id, handle, function, unique, data[:self.max_payload], len(data), priority,
                           background, failed_at, history)
        self.next_id += 1
        self.added += 1
        self.jobs[failed.id] = failed
        if self.committer is not None:
            self.committer.bury(failed)
        while len(self.jobs) > self.max_count:
            self.remove(next(iter(self.jobs)))
            self.dropped += 1
        return failed

    def select(self, target: bytes) -> list[FailedJob]:
        """The failed jobs TARGET names: ``all``, an id, or a function name (its jobs)."""
        if target.lower() == b"all":
            return list(self.jobs.values())
        if target.isdigit():
            job = self.jobs.get(int(target))
            return [job] if job is not None else []
        return [job for job in self.jobs.values() if job.function == target]

    def remove(self, id: int) -> None:
        if self.jobs.pop(id, None) is not None and self.committer is not None:
            self.committer.unbury(id)

    def load(self, jobs: list[FailedJob]) -> None:
        """Failed jobs read back from the store at start (not filed again)."""
        for job in sorted(jobs, key=lambda j: j.id):
            self.jobs[job.id] = job
            self.next_id = max(self.next_id, job.id + 1)
