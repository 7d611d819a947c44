"""What a durable queue backend is: the interface every store implements, and the job record it keeps.

Only background jobs are stored (as gearmand does). The server calls ``add`` before it sends
JOB_CREATED and ``done`` when a job completes, fails, is cancelled or is dropped after its retries;
``replay`` returns every stored job at start. A store keys jobs by (unique, function), as gearmand's
queue plugins do, so a site can move from gearmand to geartrain on the same table or keys.

Batching (group commit) is not the store's business: group.py gathers many adds and dones into one
call of ``add``/``done``, which a store runs as one transaction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass


class StoreError(Exception):
    """The backend failed (connection lost, query refused, no room); the submitter gets ERROR QUEUE_ERROR.

    ``reported``: the store has already logged the condition behind this error (the database
    cannot be reached, the disk is full), so a caller need not log it once more per call.
    ``retry_in``: seconds until the store tries the database again, when it waits a backoff."""

    def __init__(self, message: str, *, reported: bool = False, retry_in: float | None = None) -> None:
        super().__init__(message)
        self.reported = reported
        self.retry_in = retry_in


class QueueConfigError(ValueError):
    """The queue as configured can never work: an unknown scheme or parameter, a missing database
    driver, an SQLite path that cannot be opened. Refused at once, never retried as a database
    that is down would be."""


@dataclass(slots=True)
class StoredJob:
    """A background job as a store keeps it."""

    function: bytes
    unique: bytes
    data: bytes
    priority: int  # 0 HIGH, 1 NORMAL, 2 LOW (gearmand's numbers)
    when: int = 0  # run at this epoch second; 0 = now
    reducer: bytes = b""
    schedule: bytes = b""  # SUBMIT_JOB_SCHED: "min hour mday month wday"; empty for one-shot jobs
    #: the unique the store files this job under when it cannot use ``unique`` itself (an empty
    #: unique would collide under gearmand's (unique, function) key). Set by the store in add()
    #: and replay(); the server keeps it with the job and passes ``key`` back to done().
    store_key: bytes = b""

    @property
    def key(self) -> tuple[bytes, bytes]:
        """What done() needs to find this job again: (store_key or unique, function)."""
        return (self.store_key or self.unique, self.function)


class Store(ABC):
    """A durable queue backend. Every method may raise StoreError."""

    #: False only for the in-memory store: the server skips all store calls then.
    durable: bool = True
    #: a short name for logs and metrics ("sqlite", "postgres", ...)
    name: str = "store"

    def where(self) -> str:
        """Where the jobs are kept, for the start-up log line (no password); empty when nowhere."""
        return ""

    @abstractmethod
    async def open(self) -> None:
        """Connect and create the table (or keys) if needed."""

    async def ping(self) -> None:
        """Raise StoreError unless the backend answers a cheap round trip now (the readiness probe,
        server/health.py). A store with nothing to reach answers at once."""
        return None

    @abstractmethod
    async def replay(self) -> list[StoredJob]:
        """Every job stored, to queue again at start."""

    async def replay_batches(self, size: int = 10_000) -> AsyncIterator[list[StoredJob]]:
        """Every job stored, in batches of at most SIZE, so a big queue is never all in memory twice.

        Stores that can stream override this; the default slices replay()."""
        jobs = await self.replay()
        for i in range(0, len(jobs), size):
            yield jobs[i:i + size]

    @abstractmethod
    async def add(self, jobs: Sequence[StoredJob]) -> None:
        """Store JOBS in one transaction; return only once they are durable.

        May set ``store_key`` on jobs (empty unique); the server must use ``job.key`` for done()."""

    @abstractmethod
    async def done(self, keys: Sequence[tuple[bytes, bytes]]) -> None:
        """Delete the jobs with these keys (``StoredJob.key``: (store_key or unique, function)), in one transaction."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections."""


class MemoryStore(Store):
    """gearmand's builtin queue: nothing survives a restart."""

    durable = False
    name = "memory"

    async def open(self) -> None:
        return None

    async def replay(self) -> list[StoredJob]:
        return []

    async def add(self, jobs: Sequence[StoredJob]) -> None:
        return None

    async def done(self, keys: Sequence[tuple[bytes, bytes]]) -> None:
        return None

    async def close(self) -> None:
        return None
