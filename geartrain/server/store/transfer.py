"""Moving queued jobs between two durable stores (`geartrain queue copy FROM TO`), any backend to any other.

Every job FROM holds is written to TO with the store interface the server uses (``replay_batches`` then
``add``), so TO gets what a replay of FROM would queue: function, unique, data, priority, run-at time,
reducer, schedule and the tries of a job waiting for its next one, and a job filed under a generated key
keeps that key. What FROM keeps beside the queue goes too: the kept results, the failed-job registry and
the functions' policies (``replay_extras``, written to TO with one ``settle``). A store keys a job by
(unique, function), as gearmand does, and ``add`` is an upsert: a job already in TO under the same key is
replaced by FROM's, so copying twice leaves TO as copying once. With ``move``, the jobs copied are then
deleted from FROM (and so are its results, failed jobs and policies), only once all of them are in TO (a
copy cut short deletes nothing; running it again finishes it). Counting reads a store the same way.

No server may be running on FROM with ``move`` (it would run the jobs too), and a server on TO sees the
jobs only at its next start (it replays its store once, at start).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from .base import Settlement, Store

#: jobs per read and per write transaction
BATCH = 1000


@dataclass
class Moved:
    """What a copy did: jobs per function, and how many were deleted from the source."""

    functions: Counter[bytes] = field(default_factory=Counter)
    deleted: int = 0
    extras: int = 0  # kept results, failed jobs and policies copied

    @property
    def jobs(self) -> int:
        return sum(self.functions.values())


async def count(store: Store, batch: int = BATCH) -> Counter[bytes]:
    """Jobs per function in STORE (opened)."""
    found: Counter[bytes] = Counter()
    async for jobs in store.replay_batches(batch):
        found.update(job.function for job in jobs)
    return found


async def copy(source: Store, target: Store, *, move: bool = False, batch: int = BATCH) -> Moved:
    """Write every job of SOURCE to TARGET (both opened), in transactions of BATCH jobs; with MOVE, then delete
    them from SOURCE."""
    moved = Moved()
    keys: list[tuple[bytes, bytes]] = []
    async for jobs in source.replay_batches(batch):
        if move:
            keys.extend(job.key for job in jobs)  # before add(), which may file a job under a key of TARGET's
        await target.add(jobs)
        moved.functions.update(job.function for job in jobs)
    extras = await source.replay_extras()
    await target.settle(Settlement(kept=extras.kept, buried=extras.failed, policies=extras.policies))
    moved.extras = len(extras.kept) + len(extras.failed) + len(extras.policies)
    if move:
        for chunk in _chunks(keys, batch):
            await source.settle(Settlement(done=list(chunk)))
            moved.deleted += len(chunk)
        await source.settle(Settlement(unkept=[r.handle for r in extras.kept], unburied=[f.id for f in extras.failed],
                                       policies=dict.fromkeys(extras.policies, "")))
    return moved


def _chunks(items: Sequence[tuple[bytes, bytes]], size: int) -> list[Sequence[tuple[bytes, bytes]]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


__all__ = ["BATCH", "Moved", "copy", "count"]
