"""Group commit: gather the store writes of one loop turn into one Store.add and one Store.done call.

State calls ``add(record, callback)`` for each background job it must store before answering, and
``done(key)`` when a stored job ends. Everything arriving in the same loop turn, and everything
arriving while a commit is in flight, goes into the next batch: one transaction for many jobs.
After ``Store.add`` returns, each callback is called with ``None`` (then the server sends
JOB_CREATED) or, if the store raised StoreError, with the error text (then ERROR QUEUE_ERROR).
Adds are committed before dones of the same batch, and batches run one at a time, so a job's
done never overtakes its add. A new add whose key has a delete still waiting drops that delete
(the add overwrites the row; deleting after it would lose the new job; if the add fails, the
delete is due again). A failed ``Store.done``
keeps its keys and retries them in a later batch, after a backoff growing from 0.1 s to 5 s, so a
finished job is not silently left in the store to run again after the next restart. Only used
with a durable store; the memory path never gets here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .store.base import Store, StoredJob, StoreError

log = logging.getLogger("geartrain.server")

Callback = Callable[[str | None], None]
Key = tuple[bytes, bytes]

#: seconds before failed deletes are tried again: doubling from the first to the last
RETRY_MIN = 0.1
RETRY_MAX = 5.0


class GroupCommit:
    """Batches store writes; calls back into the state when a batch is durable."""

    def __init__(self, store: Store, after: Callable[[], None] | None = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.store = store
        self.after = after or (lambda: None)  # called after callbacks ran (the app flushes output)
        self.loop = loop
        self.adds: list[tuple[StoredJob, Callback]] = []
        self.dones: dict[Key, None] = {}  # deletes for the next batch, in order
        self.failed: dict[Key, None] = {}  # deletes the store refused, waiting for their retry
        self.superseded: set[Key] = set()  # deletes dropped for an add of the same key not committed yet
        self.backoff = 0.0
        self.retry_timer: asyncio.TimerHandle | None = None
        self.running = False
        self.scheduled = False
        self.batches = 0
        self.errors = 0
        self._idle: asyncio.Event | None = None

    def add(self, record: StoredJob, callback: Callback) -> None:
        if self.dones or self.failed:
            # the add upserts the row: an older delete of the same key must not run after it (if the
            # add fails, the delete is due again: see commit)
            key = record.key
            if self.dones.pop(key, 0) is None or self.failed.pop(key, 0) is None:
                self.superseded.add(key)
        self.adds.append((record, callback))
        self._kick()

    def done(self, key: Key) -> None:
        self.dones[key] = None
        self._kick()

    def _loop(self) -> asyncio.AbstractEventLoop:
        return self.loop or asyncio.get_event_loop()

    def _kick(self) -> None:
        if self.running or self.scheduled:
            return
        self.scheduled = True
        self._loop().call_soon(self._start)

    def _start(self) -> None:
        self.scheduled = False
        if self.running or not (self.adds or self.dones):
            return
        self.running = True
        self._loop().create_task(self._run())

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

    async def _run(self) -> None:
        try:
            while self.adds or self.dones:
                adds, self.adds = self.adds, []
                dones, self.dones = self.dones, {}
                await self.commit(adds, list(dones))
        finally:
            self.running = False
            if self._idle is not None:
                self._idle.set()

    async def commit(self, adds: list[tuple[StoredJob, Callback]], dones: list[Key]) -> None:
        """One batch: store the adds, answer their submitters, then delete the dones."""
        self.batches += 1
        if adds:
            error: str | None = None
            try:
                await self.store.add([record for record, _ in adds])
            except StoreError as exc:
                error = str(exc) or type(exc).__name__
            except Exception as exc:  # a backend bug must not wedge the server
                error = f"{type(exc).__name__}: {exc}"
            if error is not None:
                self.errors += 1
                log.error("queue store %s: add of %d job(s) failed: %s", self.store.name, len(adds), error)
            if self.superseded:
                for record, _ in adds:
                    key = record.key
                    if key in self.superseded:
                        self.superseded.discard(key)
                        if error is not None:  # the old row is still there, and its job is finished
                            self.failed[key] = None
                            if self.retry_timer is None:
                                self.backoff = max(self.backoff, RETRY_MIN)
                                self.retry_timer = self._loop().call_later(self.backoff, self._retry_due)
            for _, callback in adds:
                try:
                    callback(error)
                except Exception:
                    log.exception("store callback failed")
            self.after()
        if dones:
            try:
                await self.store.done(dones)
            except Exception as exc:  # keep the keys: the jobs are finished and must not run again
                self.errors += 1
                self.backoff = min(RETRY_MAX, max(RETRY_MIN, self.backoff * 2))
                log.error("queue store %s: done of %d job(s) failed: %s; retrying in %.1fs", self.store.name,
                          len(dones), exc, self.backoff)
                newer = {record.key for record, _ in self.adds} if self.adds else ()
                for key in dones:
                    if key not in newer:  # a job added again under the key since: its row must stay
                        self.failed[key] = None
                if self.retry_timer is None:
                    self.retry_timer = self._loop().call_later(self.backoff, self._retry_due)
            else:
                self.backoff = 0.0

    async def drain(self) -> None:
        """Wait until every pending write is committed (at shutdown); failed deletes get one more try."""
        if self.retry_timer is not None:
            self.retry_timer.cancel()
            self.retry_timer = None
        self._requeue_failed()
        while self.running or self.scheduled or self.adds or self.dones:
            if not self.running and (self.adds or self.dones):
                self.scheduled = False
                self.running = True
                await self._run()
                continue
            self._idle = asyncio.Event()
            if self.running:
                await self._idle.wait()
            else:
                await asyncio.sleep(0)
        if self.retry_timer is not None:
            self.retry_timer.cancel()
            self.retry_timer = None
        if self.failed:
            log.error("queue store %s: %d finished job(s) could not be deleted; they will run again after a restart",
                      self.store.name, len(self.failed))
