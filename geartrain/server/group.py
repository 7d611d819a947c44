"""Group commit: gather the store writes of one loop turn into one Store.add and one Store.done call.

State calls ``add(record, callback)`` for each background job it must store before answering, and
``done(key)`` when a stored job ends. Everything arriving in the same loop turn, and everything
arriving while a commit is in flight, goes into the next batch: one transaction for many jobs.
After ``Store.add`` returns, each callback is called with ``None`` (then the server sends
JOB_CREATED) or, if the store raised StoreError, with the error text (then ERROR QUEUE_ERROR).
Adds are committed before dones of the same batch, and batches run one at a time, so a job's
done never overtakes its add. Only used with a durable store; the memory path never gets here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .store.base import Store, StoredJob, StoreError

log = logging.getLogger("geartrain.server")

Callback = Callable[[str | None], None]


class GroupCommit:
    """Batches store writes; calls back into the state when a batch is durable."""

    def __init__(self, store: Store, after: Callable[[], None] | None = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.store = store
        self.after = after or (lambda: None)  # called after callbacks ran (the app flushes output)
        self.loop = loop
        self.adds: list[tuple[StoredJob, Callback]] = []
        self.dones: list[tuple[bytes, bytes]] = []
        self.running = False
        self.scheduled = False
        self.batches = 0
        self.errors = 0
        self._idle: asyncio.Event | None = None

    def add(self, record: StoredJob, callback: Callback) -> None:
        self.adds.append((record, callback))
        self._kick()

    def done(self, key: tuple[bytes, bytes]) -> None:
        self.dones.append(key)
        self._kick()

    def _kick(self) -> None:
        if self.running or self.scheduled:
            return
        self.scheduled = True
        loop = self.loop or asyncio.get_event_loop()
        loop.call_soon(self._start)

    def _start(self) -> None:
        self.scheduled = False
        if self.running or not (self.adds or self.dones):
            return
        self.running = True
        loop = self.loop or asyncio.get_event_loop()
        loop.create_task(self._run())

    async def _run(self) -> None:
        try:
            while self.adds or self.dones:
                adds, self.adds = self.adds, []
                dones, self.dones = self.dones, []
                await self.commit(adds, dones)
        finally:
            self.running = False
            if self._idle is not None:
                self._idle.set()

    async def commit(self, adds: list[tuple[StoredJob, Callback]], dones: list[tuple[bytes, bytes]]) -> None:
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
            for _, callback in adds:
                try:
                    callback(error)
                except Exception:
                    log.exception("store callback failed")
            self.after()
        if dones:
            try:
                await self.store.done(dones)
            except Exception as exc:
                self.errors += 1
                log.error("queue store %s: done of %d job(s) failed: %s", self.store.name, len(dones), exc)

    async def drain(self) -> None:
        """Wait until every pending write is committed (at shutdown)."""
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
