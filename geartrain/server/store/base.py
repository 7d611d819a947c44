"""What a durable queue backend is: the interface every store implements, and the records it keeps.

Only background jobs are stored (as gearmand does). The server calls ``add`` before it sends
JOB_CREATED and ``settle`` for everything that happens to stored jobs afterwards: a job that ended
is deleted, a job that failed and waits for its next try is updated (its run-at time and its tries),
a kept result of a background job is written (or dropped once it expires), a job whose tries are
spent goes into the failed-job registry (or leaves it, requeued or discarded), and a function's
retry and result policy is saved. ``replay`` returns every stored job at start, ``replay_extras``
the kept results, the failed jobs and the policies. A store keys jobs by (unique, function), as
gearmand's queue plugins do, so a site can move from gearmand to geartrain on the same table or keys
(gearmand never reads the registry, results and policies, which live beside its table).

Batching (group commit) is not the store's business: group.py gathers many adds and settlements into
one call of ``add``/``settle``, which a store runs as one transaction each.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field


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
    #: and replay(); the server keeps it with the job and passes ``key`` back to settle().
    store_key: bytes = b""
    #: tries that failed so far (a job under a retry policy, queued again after a failure), and what each
    #: said: Try.encode_all of them (empty for a job that never failed)
    tries: int = 0
    history: bytes = b""

    @property
    def key(self) -> tuple[bytes, bytes]:
        """What settle() needs to find this job again: (store_key or unique, function)."""
        return (self.store_key or self.unique, self.function)


Key = tuple[bytes, bytes]


@dataclass(slots=True)
class Try:
    """One failed try of a job: when it started and ended, on which worker, how it failed and what it said."""

    started: float  # epoch seconds
    ended: float
    worker: str  # "host fd N" of the worker, or "" when it ran nowhere
    how: str  # "failed" (WORK_FAIL), "exception" (WORK_EXCEPTION), "worker lost", "timed out"
    text: bytes = b""  # WORK_EXCEPTION's text, or a line saying what happened

    def as_list(self) -> list:
        return [self.started, self.ended, self.worker, self.how, self.text.decode("utf-8", "surrogateescape")]

    @staticmethod
    def encode_all(tries: Sequence[Try]) -> bytes:
        """TRIES as stored (JSON), for StoredJob.history and FailedJob.history."""
        return json.dumps([t.as_list() for t in tries], separators=(",", ":")).encode()

    @staticmethod
    def decode_all(blob: bytes) -> list[Try]:
        """What encode_all wrote; an empty or unreadable blob is no tries."""
        if not blob:
            return []
        try:
            rows = json.loads(blob)
            return [Try(float(r[0]), float(r[1]), str(r[2]), str(r[3]), str(r[4]).encode("utf-8", "surrogateescape"))
                    for r in rows]
        except (ValueError, TypeError, IndexError):
            return []


@dataclass(slots=True)
class KeptResult:
    """How a background job ended, kept after it ended (--keep-results), to be fetched by handle or unique."""

    handle: bytes
    function: bytes
    unique: bytes
    outcome: str  # "complete", "failed" or "exception"
    data: bytes  # WORK_COMPLETE's data, WORK_EXCEPTION's text, or b"" for a failure
    ended: float  # epoch seconds
    expires: float  # epoch seconds (finite): dropped from then on
    tries: int = 1  # how many tries it took


@dataclass(slots=True)
class FailedJob:
    """A job whose tries are spent, kept in the failed-job registry until it is requeued or discarded."""

    id: int  # given by the server, counted up, never reused
    handle: bytes  # of its last run
    function: bytes
    unique: bytes
    data: bytes  # its payload (cut to the server's limit: see size)
    size: int  # the payload's real size in bytes
    priority: int
    background: bool
    failed_at: float  # epoch seconds
    history: bytes = b""  # Try.encode_all of every try


@dataclass(slots=True)
class Retry:
    """A stored job queued again after a failed try: its new run-at time and its tries so far."""

    key: Key
    when: float  # epoch seconds
    tries: int
    history: bytes  # Try.encode_all


@dataclass(slots=True)
class Settlement:
    """Everything that happened to stored jobs since the last settlement, written in one transaction.

    Order within it does not matter to the store: each list touches its own rows, and a key is in at
    most one of ``done`` and ``retried`` (group.py sees to that)."""

    done: list[Key] = field(default_factory=list)  # jobs that ended (or were buried): delete their rows
    retried: list[Retry] = field(default_factory=list)  # jobs waiting for their next try: update their rows
    kept: list[KeptResult] = field(default_factory=list)  # results to write (a handle written again replaces)
    unkept: list[bytes] = field(default_factory=list)  # handles of results to delete (expired, evicted)
    buried: list[FailedJob] = field(default_factory=list)  # failed jobs to write into the registry
    unburied: list[int] = field(default_factory=list)  # ids of failed jobs to delete (requeued, discarded)
    policies: dict[bytes, str] = field(default_factory=dict)  # function -> its policy's text; "" deletes it

    def __bool__(self) -> bool:
        return bool(self.done or self.retried or self.kept or self.unkept or self.buried or self.unburied
                    or self.policies)


@dataclass(slots=True)
class Extras:
    """What a store keeps besides the queue, read back at start."""

    kept: list[KeptResult] = field(default_factory=list)
    failed: list[FailedJob] = field(default_factory=list)
    policies: dict[bytes, str] = field(default_factory=dict)


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

        May set ``store_key`` on jobs (empty unique); the server must use ``job.key`` for settle(). The jobs'
        ``tries`` and ``history`` are stored too (a job added again under a key replaces the old row whole)."""

    @abstractmethod
    async def settle(self, batch: Settlement) -> None:
        """Write BATCH in one transaction: delete the ``done`` jobs (by ``StoredJob.key``: (store_key or unique,
        function)), update the ``retried`` ones, write and delete kept results, failed jobs and policies.

        A retry of a key that is not stored (deleted meanwhile) changes nothing; its run-at time is stored in
        whole seconds, rounded up (gearmand's ``when_to_run``). Every write is idempotent (upsert, update or
        delete by key), so a settlement may be written again after an error. A database with no room for the
        settlement's writes gets its deletes alone (``done`` unless the batch buries a job, ``unkept``,
        ``unburied``, deleted policies) in a transaction of their own, and the call still raises StoreError:
        the caller files the whole settlement again later."""

    @abstractmethod
    async def replay_extras(self) -> Extras:
        """The kept results, the failed-job registry and the policies, as settle() left them: the results not
        yet expired (the expired ones are deleted now, where there is room: the server that kept them may not
        have lived to), the failed jobs ordered by id."""

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

    async def settle(self, batch: Settlement) -> None:
        return None

    async def replay_extras(self) -> Extras:
        return Extras()

    async def close(self) -> None:
        return None
