"""Group commit: gather the store writes of one loop turn into one Store.add and one Store.settle call.

State files each new background job it must store before answering with ``add_job(job, record)``
(the fast path: the whole batch is answered by one ``on_jobs(batch, error)`` call, and the state
keeps its replies in ``batch.holds``), any other record with ``add(record, callback)`` (a
background submission joining a running job, a cron schedule), and what happens to stored jobs
afterwards: ``done(key)`` when a stored job ends, ``retry(Retry)`` when it waits for its next try,
``keep(KeptResult)``/``unkeep(handle)`` for kept results, ``bury(FailedJob, key)``/``unbury(id)`` for
the failed-job registry and ``policy(function, text)`` for a function's policy ("" deletes it).
Everything arriving in the same loop turn, and everything arriving while a commit is in flight, goes
into the next ``Batch``: one ``Store.add`` of its records, up to MAX_BATCH (a full batch waits in
line and the next one fills), then one ``Store.settle`` of the other writes filed meanwhile. After
``Store.add`` returns, the batch is answered with ``None`` (then the server sends JOB_CREATED) or, if
the store raised StoreError, with the error text (then ERROR QUEUE_ERROR). Batches run one at a time
in the order they filled, and a batch's adds are committed before its settlement, so a job's done
never overtakes its add.

Why a cap: past 512 rows a bigger transaction costs the stores little less per job (bench/store_add.py
measures it; docs/benchmarks.md has the figures), less than the server itself spends on a job, but it
answers later. A client with a thousand
submits in flight that all went into one batch waits for the whole commit, while the database works
and the server and the client sit idle; with 512 it gets half its replies after half the work and
sends its next submits while the other half commits, so client, server and database overlap.

One write per row waits (``Writes``): a later write of the same row replaces the earlier one (a keep
then an unkeep of a handle: the unkeep; a retry then a done of a job: the done), except that a retry
never replaces a done (the row is gone: there is nothing left to update). A new add whose key has a
done or retry waiting for the same batch drops it (the add writes the whole row; writing after it
would lose the new job; if the add fails, the dropped write is due again); one in an earlier batch
runs before the add anyway.

A settlement the store refuses keeps its writes and tries them again after a backoff growing from
0.1 s to 5 s (or when the store says it will try its database again), as a settlement of its own
in a later batch (so one that the database refuses for good holds back only itself), so a finished
job is not silently left in the store to run again after the next restart, nor a result, burial or
policy lost. A write filed meanwhile for the same row replaces the waiting one (it would be older),
except that a waiting done stays in charge of its job's row (a done filed again, or a retry, adds
nothing to it): a job's done and its burial, filed together, stay together, so after a crash the job
is in the queue or in the registry, never both nor neither. A failure whose cause the store has
logged already (``StoreError.reported``: the database cannot be reached, no room) is not logged again
per batch. Only used with a durable store; the memory path never gets here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .store.base import FailedJob, KeptResult, Retry, Settlement, Store, StoredJob, StoreError

log = logging.getLogger("geartrain.server")

Callback = Callable[[str | None], None]
Key = tuple[bytes, bytes]

#: seconds before failed settlements are tried again: doubling from the first to the last
RETRY_MIN = 0.1
RETRY_MAX = 5.0
#: records in one batch at most (one Store.add call, one transaction)
MAX_BATCH = 512


class Writes:
    """The writes of one settlement, one per row, in the order they were filed."""

    __slots__ = ("dones", "retries", "kept", "buried", "policies")

    def __init__(self) -> None:
        self.dones: dict[Key, None] = {}  # jobs that ended: delete their rows
        self.retries: dict[Key, Retry] = {}  # jobs waiting for their next try (never a key of dones)
        self.kept: dict[bytes, KeptResult | None] = {}  # handle -> result to write, or None to delete
        self.buried: dict[int, FailedJob | None] = {}  # id -> failed job to write, or None to delete
        self.policies: dict[bytes, str] = {}  # function -> policy text ("" deletes)

    def __bool__(self) -> bool:
        return bool(self.dones or self.retries or self.kept or self.buried or self.policies)

    def __len__(self) -> int:
        return len(self.dones) + len(self.retries) + len(self.kept) + len(self.buried) + len(self.policies)

    def settlement(self) -> Settlement:
        if not (self.retries or self.kept or self.buried or self.policies):
            return Settlement(done=list(self.dones))  # the hot path: finished jobs
        return Settlement(done=list(self.dones), retried=list(self.retries.values()),
                          kept=[r for r in self.kept.values() if r is not None],
                          unkept=[h for h, r in self.kept.items() if r is None],
                          buried=[f for f in self.buried.values() if f is not None],
                          unburied=[i for i, f in self.buried.items() if f is None],
                          policies=dict(self.policies))

    def describe(self) -> str:
        parts = [f"{len(d)} {what}" for what, d in (("done(s)", self.dones), ("retry(s)", self.retries),
                                                    ("result(s)", self.kept), ("burial(s)", self.buried),
                                                    ("policy(ies)", self.policies)) if d]
        return ", ".join(parts) or "nothing"


class Batch:
    """What one commit carries, in the order it arrived."""

    __slots__ = ("records", "jobs", "job_records", "callbacks", "holds", "writes", "synced")

    def __init__(self) -> None:
        self.records: list[StoredJob] = []  # every record to add, in order (a store keeps the last of a key)
        self.jobs: list[Any] = []  # the new jobs of add_job, answered together by on_jobs
        self.job_records: list[StoredJob] = []  # their records, in the same order
        self.callbacks: list[Callback] = []  # one per add() record
        self.holds: list[Any] = []  # for the owner of the jobs: the replies waiting for this batch
        #: settlements, committed after the adds: refused writes due again first, then those filed meanwhile
        self.writes: list[Writes] = []
        self.synced: list[Callback] = []  # sync()'s: called once the whole batch, settlements too, is done

    def __bool__(self) -> bool:
        return bool(self.records or self.writes or self.synced)


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
        self.pending = Writes()  # writes for the next batch
        self.failed: Writes | None = None  # writes the store refused, waiting for their retry
        self.failed_due = False  # the backoff is over: the next batch takes them
        #: dones and retries dropped for an add of the same key not committed yet (None: a done)
        self.superseded: dict[Key, Retry | None] = {}
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
        pending = self.pending
        if pending.dones or pending.retries or self.failed is not None:
            self._supersede(record.key)
        batch = self.filling
        if len(batch.records) >= MAX_BATCH:
            batch = self._seal()
        batch.records.append(record)
        return batch

    def done(self, key: Key) -> None:
        """A stored job ended: delete its row."""
        failed = self.failed
        if failed is not None:
            if key in failed.dones:
                return  # its delete waits already (with its job's burial, if any)
            failed.retries.pop(key, None)
        pending = self.pending
        if pending.retries:
            pending.retries.pop(key, None)
        pending.dones[key] = None
        self._kick()

    def retry(self, retry: Retry) -> None:
        """A stored job failed and waits for its next try: update its row's run-at time and tries."""
        key = retry.key
        failed = self.failed
        if failed is not None:
            if key in failed.dones:
                return  # its row is deleted (or will be): nothing to update
            failed.retries.pop(key, None)
        if key in self.pending.dones:
            return
        self.pending.retries[key] = retry
        self._kick()

    def keep(self, result: KeptResult) -> None:
        """Write a kept result (a handle kept again replaces the old one)."""
        self._set("kept", result.handle, result)

    def unkeep(self, handle: bytes) -> None:
        """Delete the kept result of HANDLE (expired or evicted)."""
        self._set("kept", handle, None)

    def bury(self, failed: FailedJob, key: Key | None = None) -> None:
        """Write FAILED into the failed-job registry. KEY: its job's row in the queue, deleted in the same
        settlement (the same as done(KEY) just before it, with no add between)."""
        if key is not None:
            if self.failed is not None:
                self.failed.dones.pop(key, None)  # a delete waiting for its retry goes with the burial instead
            self.done(key)
        self._set("buried", failed.id, failed)

    def unbury(self, id_: int) -> None:
        """Delete failed job ID from the registry (requeued or discarded)."""
        self._set("buried", id_, None)

    def policy(self, function: bytes, text: str) -> None:
        """Save FUNCTION's policy (TEXT; "" deletes it)."""
        self._set("policies", function, text)

    def sync(self, callback: Callback) -> None:
        """Call CALLBACK once every write filed so far is committed: with None, or with the store's error if it
        refused them (they are still tried again later). An admin or HTTP change of what the store keeps
        (a policy, the failed-job registry) is answered only then, so what was acknowledged survives a crash."""
        self.filling.synced.append(callback)
        self._kick()

    def _set(self, kind: str, key: Any, value: Any) -> None:
        """File a write of a row of a table beside the queue: it replaces any earlier one of the row."""
        if self.failed is not None:
            getattr(self.failed, kind).pop(key, None)
        getattr(self.pending, kind)[key] = value
        self._kick()

    def _supersede(self, key: Key) -> None:
        # the add upserts the row: an older done or retry of the same key must not run after it (if the
        # add fails, it is due again: see _answer)
        pending, failed = self.pending, self.failed
        if pending.dones.pop(key, 0) is None:
            self.superseded[key] = None
        if pending.retries and (retry := pending.retries.pop(key, None)) is not None:
            self.superseded[key] = retry
        if failed is not None:
            if failed.dones.pop(key, 0) is None:
                self.superseded[key] = None
            if (retry := failed.retries.pop(key, None)) is not None:
                self.superseded[key] = retry

    # -- starting batches ------------------------------------------------------------------

    def _loop(self) -> asyncio.AbstractEventLoop:
        return self.loop or asyncio.get_event_loop()

    def _kick(self) -> None:
        if self.scheduled or self.running is not None:
            return  # the batch in flight starts the next when it ends
        self.scheduled = True
        self._loop().call_soon(self._start)

    def _seal(self) -> Batch:
        """The filling batch is full: it waits in line with the writes filed meanwhile; a new one fills."""
        batch = self.filling
        self._take_writes(batch)
        self.full.append(batch)
        self.filling = Batch()
        return self.filling

    def _has_writes(self) -> bool:
        return bool(self.pending) or (self.failed_due and bool(self.failed))

    def _take_writes(self, batch: Batch) -> None:
        """The writes filed so far go with BATCH, after its adds; refused ones whose backoff is over first
        (unless later writes replaced them all)."""
        if self.failed_due and self.failed is not None:
            if self.failed:
                batch.writes.append(self.failed)
            self.failed = None
            self.failed_due = False
        if self.pending:
            batch.writes.append(self.pending)
            self.pending = Writes()

    def _start(self) -> None:
        self.scheduled = False
        if self.running is not None:
            return
        if self.full:
            batch = self.full.pop(0)
        else:
            batch = self.filling
            if not (batch or self._has_writes()):
                return
            self.filling = Batch()
            self._take_writes(batch)
        self.running = batch
        self._loop().create_task(self._run(batch))

    def _retry_due(self) -> None:
        """The backoff after a refused settlement is over: its writes go in the next batch."""
        self.retry_timer = None
        if self.failed:
            self.failed_due = True
            self._kick()
        else:  # later writes replaced them all
            self.failed = None

    def _retry_later(self, delay: float) -> None:
        if self.retry_timer is None:
            self.retry_timer = self._loop().call_later(delay, self._retry_due)

    # -- one batch -------------------------------------------------------------------------

    async def _run(self, batch: Batch) -> None:
        try:
            await self.commit(batch)
        finally:
            self.running = None
            if self._idle is not None:
                self._idle.set()
            if self.full or self.filling or self._has_writes():
                self._kick()

    async def commit(self, batch: Batch) -> None:
        """One batch: store the adds, answer their submitters, then settle the other writes."""
        self.batches += 1
        error: str | None = None
        if batch.records:
            reported = False
            try:
                await self.store.add(batch.records)
            except StoreError as exc:
                error = str(exc) or type(exc).__name__
                reported = exc.reported
            except Exception as exc:  # a backend bug must not wedge the server
                error = f"{type(exc).__name__}: {exc}"
            self._answer(batch, error, reported)
        refused: str | None = None
        for writes in batch.writes:
            try:
                await self.store.settle(writes.settlement())
            except Exception as exc:  # keep the writes: a finished job must not run again, nor a result be lost
                refused = str(exc) or type(exc).__name__
                self.errors += 1
                self.backoff = min(RETRY_MAX, max(RETRY_MIN, self.backoff * 2))
                delay = self.backoff
                if isinstance(exc, StoreError) and exc.retry_in is not None:
                    delay = max(exc.retry_in, RETRY_MIN)  # when the store tries its database again
                # a condition the store has logged already (database down, disk full) is not logged per retry
                level = logging.DEBUG if isinstance(exc, StoreError) and exc.reported else logging.ERROR
                log.log(level, "queue store %s: settlement of %s failed: %s; retrying in %.1fs", self.store.name,
                        writes.describe(), exc, delay)
                self._refile(writes)
                self._retry_later(delay)
        if refused is None and self.failed is None:
            self.backoff = 0.0
        if batch.synced:
            for callback in batch.synced:
                try:
                    callback(error or refused)
                except Exception:
                    log.exception("store callback failed")
            self.after()

    def _refile(self, writes: Writes) -> None:
        """WRITES were refused: keep them for their retry, unless a write filed since replaces one of them."""
        pending = self.pending
        newer = {record.key for b in (*self.full, self.filling) for record in b.records}  # adds filed since
        for key in list(writes.dones):
            if key in newer:  # a job added again under the key since: its new row must stay
                del writes.dones[key]
                self.superseded[key] = None  # (unless that add fails)
            else:  # the waiting delete stays in charge of the row (with its job's burial, if any)
                pending.dones.pop(key, None)
                pending.retries.pop(key, None)
        for key in list(writes.retries):
            if key in newer:
                self.superseded[key] = writes.retries.pop(key)
            elif key in pending.dones or key in pending.retries:
                del writes.retries[key]
        for kind in ("kept", "buried", "policies"):
            mine, theirs = getattr(writes, kind), getattr(pending, kind)
            for key in [k for k in mine if k in theirs]:
                del mine[key]
        if self.failed is None:
            self.failed = writes
        else:  # (disjoint: a write filed for a row replaces its waiting one)
            for kind in Writes.__slots__:
                getattr(self.failed, kind).update(getattr(writes, kind))

    def _answer(self, batch: Batch, error: str | None, reported: bool = False) -> None:
        if error is not None:
            self.errors += 1
            log.log(logging.DEBUG if reported else logging.ERROR, "queue store %s: add of %d job(s) failed: %s",
                    self.store.name, len(batch.records), error)
        if self.superseded:
            back = Writes()  # the writes an add dropped, due again because the add failed
            for record in batch.records:
                key = record.key
                if key in self.superseded:
                    dropped = self.superseded.pop(key)
                    if error is not None:  # the old row is still there, and its job is finished (or waits)
                        if dropped is None:
                            back.dones[key] = None
                        else:
                            back.retries[key] = dropped
            if back:
                self._refile(back)
                self.backoff = max(self.backoff, RETRY_MIN)
                self._retry_later(self.backoff)
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
        """Wait until every pending write is committed (at shutdown); refused ones get one more try."""
        if self.retry_timer is not None:
            self.retry_timer.cancel()
            self.retry_timer = None
        self.failed_due = True
        while self.running is not None or self.scheduled or self.full or self.filling or self._has_writes():
            if self.running is None and (self.full or self.filling or self._has_writes()):
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
        left = self.failed
        if left is not None and left.dones:
            log.error("queue store %s: %d finished job(s) could not be deleted; they will run again after a restart",
                      self.store.name, len(left.dones))
        if left is not None and len(left) > len(left.dones):
            left.dones = {}
            log.error("queue store %s: could not be written, and lost: %s", self.store.name, left.describe())
