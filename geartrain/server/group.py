"""Group commit: gather the store writes of one loop turn into one Store.add and one Store.done call.

State files each new background job it must store before answering with ``add_job(job, record)``
(the fast path: the whole batch is answered by one ``on_jobs(batch, error)`` call, and the state
keeps its replies in ``batch.holds``), any other record with ``add(record, callback)`` (a
background submission joining a running job, a cron schedule), and ``done(key)`` when a stored job
ends. Everything arriving in the same loop turn, and everything arriving while a commit is in
flight, goes into the next ``Batch``: one transaction for many jobs, up to MAX_BATCH records (a
full batch waits in line and the next one fills). After ``Store.add`` returns, the batch is
answered with ``None`` (then the server sends JOB_CREATED) or, if the store raised StoreError, with
the error text (then ERROR QUEUE_ERROR). Adds are committed before the dones of the same batch (the
deletes filed while it filled), and batches run one at a time in the order they filled, so a job's
done never overtakes its add.

Why a cap: past 512 rows a bigger transaction costs the stores little less per job (bench/store_add.py
measures it; docs/benchmarks.md has the figures), less than the server itself spends on a job, but it
answers later. A client with a thousand
submits in flight that all went into one batch waits for the whole commit, while the database works
and the server and the client sit idle; with 512 it gets half its replies after half the work and
sends its next submits while the other half commits, so client, server and database overlap.

A new add whose key has a delete waiting for the same batch drops that delete (the add overwrites
the row; deleting after it would lose the new job; if the add fails, the delete is due again); a
delete already in an earlier batch runs before the add anyway. A failed
``Store.done`` keeps its keys and retries them in a later batch, after a backoff growing from
0.1 s to 5 s (or when the store says it will try its database again), so a finished job is not
silently left in the store to run again after the next restart. A failure whose cause the store has
logged already (``StoreError.reported``: the database cannot be reached, no room) is not logged
again per batch. Only used with a durable store; the memory path never gets here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .store.base import Settlement, Store, StoredJob, StoreError

log = logging.getLogger("geartrain.server")

Callback = Callable[[str | None], None]
Key = tuple[bytes, bytes]

#: seconds before failed deletes are tried again: doubling from the first to the last
RETRY_MIN = 0.1
RETRY_MAX = 5.0
#: records in one batch at most (one Store.add call, one transaction)
MAX_BATCH = 512


class Batch:
    """What one commit carries, in the order it arrived."""

    __slots__ = ("records", "jobs", "job_records", "callbacks", "holds", "dones")

    def __init__(self) -> None:
        self.records: list[StoredJob] = []  # every record to add, in order (a store keeps the last of a key)
        self.jobs: list[Any] = []  # the new jobs of add_job, answered together by on_jobs
        self.job_records: list[StoredJob] = []  # their records, in the same order
        self.callbacks: list[Callback] = []  # one per add() record
        self.holds: list[Any] = []  # for the owner of the jobs: the replies waiting for this batch
        self.dones: list[Key] = []  # deletes, committed after the adds

    def __bool__(self) -> bool:
        return bool(self.records or self.dones)


class GroupCommit:
    """Batches store writes; calls back into the state when a batch is durable."""

    def __init__(self, store: Store, after: Callable[[], None] | None = None,
                 loop: asyncio.AbstractEventLoop | None = None,
                 on_jobs: Callable[[Batch, str | None], None] | None = None) -> None:
        self.store = store
        self.after = after or (lambda: None)  # called after callbacks ran (the app flushes output)
        self.loop = loop
        self.on_jobs = on_jobs  # answers a batch's add_job jobs: State.jobs_committed (needed for add_job)
        self.filling = Batch()  # the batch being filled
        self.full: list[Batch] = []  # batches that reached MAX_BATCH, waiting for their turn, oldest first
        self.dones: dict[Key, None] = {}  # deletes for the next batch, in order
        self.failed: dict[Key, None] = {}  # deletes the store refused, waiting for their retry
        self.superseded: set[Key] = set()  # deletes dropped for an add of the same key not committed yet
        self.running: Batch | None = None  # the batch being committed
        self.backoff = 0.0
        self.retry_timer: asyncio.TimerHandle | None = None
        self.scheduled = False
        self.batches = 0
        self.errors = 0
        self._idle: asyncio.Event | None = None

    # -- what the state calls --------------------------------------------------------------

    def add_job(self, job: Any, record: StoredJob) -> Batch:
        """File a new job's record; the batch it goes in (answered by on_jobs) is returned."""
        batch = self._file(record)
        batch.jobs.append(job)
        batch.job_records.append(record)
        if not self.scheduled:
            self._kick()
        return batch

    def add(self, record: StoredJob, callback: Callback) -> None:
        """File a record whose CALLBACK is called with the outcome of its batch."""
        self._file(record).callbacks.append(callback)
        self._kick()

    def _file(self, record: StoredJob) -> Batch:
        """Put RECORD in the batch being filled (sealing it first when full) and return that batch."""
        if self.dones or self.failed:
            self._supersede(record.key)
        batch = self.filling
        if len(batch.records) >= MAX_BATCH:
            batch = self._seal()
        batch.records.append(record)
        return batch

    def done(self, key: Key) -> None:
        self.dones[key] = None
        self._kick()

    def _supersede(self, key: Key) -> None:
        # the add upserts the row: an older delete of the same key must not run after it (if the add
        # fails, the delete is due again: see _answer)
        if self.dones.pop(key, 0) is None or self.failed.pop(key, 0) is None:
            self.superseded.add(key)

    # -- starting batches ------------------------------------------------------------------

    def _loop(self) -> asyncio.AbstractEventLoop:
        return self.loop or asyncio.get_event_loop()

    def _kick(self) -> None:
        if self.scheduled or self.running is not None:
            return  # the batch in flight starts the next when it ends
        self.scheduled = True
        self._loop().call_soon(self._start)

    def _seal(self) -> Batch:
        """The filling batch is full: it waits in line with the deletes filed meanwhile; a new one fills."""
        batch = self.filling
        self._take_dones(batch)
        self.full.append(batch)
        self.filling = Batch()
        return self.filling

    def _take_dones(self, batch: Batch) -> None:
        """The deletes filed so far go with BATCH, after its adds."""
        if self.dones:
            batch.dones = list(self.dones)
            self.dones = {}

    def _start(self) -> None:
        self.scheduled = False
        if self.running is not None:
            return
        if self.full:
            batch = self.full.pop(0)
        else:
            batch = self.filling
            if not (batch or self.dones):
                return
            self.filling = Batch()
            self._take_dones(batch)
        self.running = batch
        self._loop().create_task(self._run(batch))

    def _retry_due(self) -> None:
        """The backoff after a failed delete is over: put its keys in the next batch."""
        self.retry_timer = None
        self._requeue_failed()
        self._kick()

    def _requeue_failed(self) -> None:
        if self.failed:
            failed, self.failed = self.failed, {}
            failed.update(self.dones)  # the older deletes first
            self.dones = failed

    # -- one batch -------------------------------------------------------------------------

    async def _run(self, batch: Batch) -> None:
        try:
            await self.commit(batch)
        finally:
            self.running = None
            if self._idle is not None:
                self._idle.set()
            if self.full or self.filling or self.dones:
                self._kick()

    async def commit(self, batch: Batch) -> None:
        """One batch: store the adds, answer their submitters, then delete the dones."""
        self.batches += 1
        if batch.records:
            error: str | None = None
            reported = False
            try:
                await self.store.add(batch.records)
            except StoreError as exc:
                error = str(exc) or type(exc).__name__
                reported = exc.reported
            except Exception as exc:  # a backend bug must not wedge the server
                error = f"{type(exc).__name__}: {exc}"
            self._answer(batch, error, reported)
        if batch.dones:
            dones = batch.dones
            try:
                await self.store.settle(Settlement(done=dones))
            except Exception as exc:  # keep the keys: the jobs are finished and must not run again
                self.errors += 1
                self.backoff = min(RETRY_MAX, max(RETRY_MIN, self.backoff * 2))
                delay = self.backoff
                if isinstance(exc, StoreError) and exc.retry_in is not None:
                    delay = max(exc.retry_in, RETRY_MIN)  # when the store tries its database again
                # a condition the store has logged already (database down, disk full) is not logged per retry
                level = logging.DEBUG if isinstance(exc, StoreError) and exc.reported else logging.ERROR
                log.log(level, "queue store %s: done of %d job(s) failed: %s; retrying in %.1fs", self.store.name,
                        len(dones), exc, delay)
                newer = {record.key for b in (*self.full, self.filling) for record in b.records}
                for key in dones:
                    if key not in newer:  # a job added again under the key since: its row must stay
                        self.failed[key] = None
                if self.retry_timer is None:
                    self.retry_timer = self._loop().call_later(delay, self._retry_due)
            else:
                self.backoff = 0.0

    def _answer(self, batch: Batch, error: str | None, reported: bool = False) -> None:
        if error is not None:
            self.errors += 1
            log.log(logging.DEBUG if reported else logging.ERROR, "queue store %s: add of %d job(s) failed: %s",
                    self.store.name, len(batch.records), error)
        if self.superseded:
            for record in batch.records:
                key = record.key
                if key in self.superseded:
                    self.superseded.discard(key)
                    if error is not None:  # the old row is still there, and its job is finished
                        self.failed[key] = None
                        if self.retry_timer is None:
                            self.backoff = max(self.backoff, RETRY_MIN)
                            self.retry_timer = self._loop().call_later(self.backoff, self._retry_due)
        if batch.jobs:
            try:
                self.on_jobs(batch, error)  # type: ignore[misc]
            except Exception:
                log.exception("store callback failed")
        for callback in batch.callbacks:
            try:
                callback(error)
            except Exception:
                log.exception("store callback failed")
        self.after()

    async def drain(self) -> None:
        """Wait until every pending write is committed (at shutdown); failed deletes get one more try."""
        if self.retry_timer is not None:
            self.retry_timer.cancel()
            self.retry_timer = None
        self._requeue_failed()
        while self.running is not None or self.scheduled or self.full or self.filling or self.dones:
            if self.running is None and (self.full or self.filling or self.dones):
                self.scheduled = False
                self._start()
                continue
            if self.running is not None:
                self._idle = asyncio.Event()
                await self._idle.wait()
            else:
                await asyncio.sleep(0)
        if self.retry_timer is not None:
            self.retry_timer.cancel()
            self.retry_timer = None
        if self.failed:
            log.error("queue store %s: %d finished job(s) could not be deleted; they will run again after a restart",
                      self.store.name, len(self.failed))
