"""Submitting jobs: SUBMIT_JOB* packets, unique coalescing, queueing, and the durable store's commit.

A part of State (a mixin: every method works on the State's attributes). A new job is indexed by
handle and, to coalesce, in its function's ``uniques``; a background job under a durable store waits
``PENDING`` until group.py commits the batch it went in (``jobs_committed``). Its JOB_CREATED waits
in a placeholder (``Hold``) in the submitter's output; one Hold covers every job a connection
submitted in a row into the same batch, so a burst of submits costs one placeholder, not one each.
"""

from __future__ import annotations

import heapq
import struct
from functools import partial
from typing import Any

from ..protocol.codec import error_packet, pack_res
from ..protocol.packets import MAX_UNIQUE_SIZE, NORMAL, ErrorCode
from .group import Batch
from .jobs import DELAYED, DONE, PENDING, QUEUED, Hold, Job, Peer
from .replies import JOB_CREATED, JOB_CREATED_HEAD, QUEUE_FULL, UNIQUE_TOO_LARGE, atoi
from .store.base import StoredJob


class Submitting:
    """How jobs come in: every SUBMIT_JOB* packet, coalescing, queueing, the store commit.

    A part of State: it works on State's ``functions``, ``jobs``, ``pending_holds``, ``ready``, the epoch
    heap, the counters and the ``committer``, and calls its ``send``/``_hold``/``_resolve`` and ``_wake``."""

    def _submit(self, priority: int, background: bool, peer: Peer, args: tuple[bytes, ...]) -> None:
        name, unique, data = args
        f = self.functions.get(name)
        if unique or f is None or self.acl is not None or f.maxqueue[priority] or (
                background and self.committer is not None):
            if len(unique) > MAX_UNIQUE_SIZE:
                self.send(peer, UNIQUE_TOO_LARGE)
                return
            self.submit(peer, name, unique, data, priority, background)
            return
        # the hot path: a job without a unique, of a known function, nothing to check or commit; what
        # submit() does for it, inline
        self.counter += 1
        handle = self.prefix + str(self.counter).encode()
        job = Job(handle, f, unique, data, priority, background)
        f.submitted += 1
        self.submitted += 1
        self.jobs[handle] = job
        if not background:
            job.clients = [peer]
            peer.client_jobs[job] = None
        if not peer.closed:
            out = peer.out
            if not out:
                self.dirty.append(peer)
            out.append(b"".join((JOB_CREATED_HEAD, len(handle).to_bytes(4, "big"), handle)))
        self._enqueue(job)

    def _submit_epoch(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        name, unique, when, data = args
        if len(unique) > MAX_UNIQUE_SIZE:
            self.send(peer, UNIQUE_TOO_LARGE)
            return
        self.submit(peer, name, unique, data, NORMAL, True, when=atoi(when))

    def _submit_reduce(self, background: bool, peer: Peer, args: tuple[bytes, ...]) -> None:
        name, unique, reducer, _aggregator, data = args
        if len(unique) > MAX_UNIQUE_SIZE:
            self.send(peer, UNIQUE_TOO_LARGE)
            return
        self.submit(peer, name, unique, data, NORMAL, background, reducer=reducer)

    def submit(self, peer: Peer | None, name: bytes, unique: bytes, data: bytes, priority: int, background: bool,
               *, reducer: bytes = b"", when: int = 0) -> Job | None:
        """Queue a job (or join the job with the same function and unique) and reply JOB_CREATED.

        PEER None is an internal submission (a cron run, a replayed job): no reply, no client.
        """
        if self.acl is not None and peer is not None and not self._allowed(peer, "submit", name):
            return None
        f = self.functions.get(name)
        if f is None:
            f = self.function(name)
        if unique and (data or unique != b"-"):
            key: Any = unique if unique != b"-" else (data,)
            job = f.uniques.get(key)
            if job is not None:
                self._join(peer, job, background)
                return job
        else:
            key = None
        limit = f.maxqueue[priority]
        if limit and f.total >= limit:
            if peer is not None:
                self.send(peer, QUEUE_FULL)
            return None
        self.counter += 1
        handle = self.prefix + str(self.counter).encode()
        job = Job(handle, f, unique, data, priority, background, reducer, when)
        f.submitted += 1
        self.submitted += 1
        self.jobs[handle] = job
        if key is not None:
            f.uniques[key] = job
        if peer is not None and not background:
            job.clients = [peer]
            peer.client_jobs[job] = None
        if background and self.committer is not None and peer is not None:
            # durable: JOB_CREATED only once the store has it
            job.state = PENDING
            f.delayed[priority] += 1
            record = StoredJob(name, unique, data, priority) if job.reduce_when is None else self.record(job)
            batch = self.committer.add_job(job, record)
            out = peer.out
            if out:
                hold = out[-1]
                if type(hold) is Hold and hold.batch is batch:  # the last reply waits for the same batch
                    hold.jobs.append(job)
                    return job
            hold = self._hold(peer)
            hold.batch = batch
            hold.jobs.append(job)
            batch.holds.append((peer, hold))
            return job
        if peer is not None:
            self.send(peer, pack_res(JOB_CREATED, handle))
        if when and when > self.now:
            self._delay(job)
        else:
            self._enqueue(job)
        return job

    def _join(self, peer: Peer | None, job: Job, background: bool) -> None:
        """A submission with the unique of an existing job: attach to it instead of queueing another."""
        if peer is None:
            return
        if not background:
            if job.clients:
                job.clients.append(peer)
            else:
                job.clients = [peer]
            peer.client_jobs[job] = None
        elif not job.background:
            # a background submission joined a foreground job: it must now survive its clients leaving
            job.background = True
            if self.committer is not None and job.store_key is None and job.state != PENDING:
                job.store_key = b""  # its done goes out even if it ends before the commit
                hold = self._hold(peer)
                record = self.record(job)
                self.committer.add(record, partial(self._join_committed, job, record, peer, hold))
                return
        if job.state == PENDING:
            self.pending_holds.setdefault(job, []).append((peer, self._hold(peer)))
        else:
            self.send(peer, pack_res(JOB_CREATED, job.handle))

    def _delay(self, job: Job) -> None:
        job.state = DELAYED
        job.function.delayed[job.priority] += 1
        heap = self.epoch_heap
        heapq.heappush(heap, (job.when, next(self._seq), job))
        if len(heap) > self._epoch_limit:
            # cancelled epoch jobs stay in the heap until their time: drop them once they are half of it
            heap[:] = [e for e in heap if e[2].state == DELAYED]
            heapq.heapify(heap)
            self._epoch_limit = max(1024, 2 * len(heap))

    def _enqueue(self, job: Job, head: bool = False) -> None:
        f = job.function
        p = job.priority
        job.state = QUEUED
        job.queued_at = self.now
        if head:
            f.queues[p].appendleft(job)
        else:
            f.queues[p].append(job)
        if not f.queued[p]:
            self.ready[p][f] = None
        f.queued[p] += 1
        if f.sleepers or self.wide_sleepers:
            if self.grabs and self._grab_will_take(f):
                self.unwoken[f] = self.unwoken.get(f, 0) + 1  # retry_grabs wakes sleepers for what is left
            else:
                self._wake(f, self.worker_wakeup)

    @staticmethod
    def record(job: Job) -> StoredJob:
        """The store's record of a background job (the store may give it a key if its unique is empty).

        Only the key the store files it under is kept with the job once committed (Job.store_key)."""
        rw = job.reduce_when
        if rw is None:
            return StoredJob(job.function.name, job.unique, job.data, job.priority)
        return StoredJob(job.function.name, job.unique, job.data, job.priority, int(rw[1] or 0), rw[0])

    def jobs_committed(self, batch: Batch, error: str | None) -> None:
        """The store committed (ERROR None) or refused a batch of new background jobs: queue them and
        answer their submitters (and any submission that joined one of them meanwhile)."""
        joiners = self.pending_holds
        if error is None:
            now = self.now
            enqueue = self._enqueue
            for job, record in zip(batch.jobs, batch.job_records, strict=True):
                if job.state != PENDING:
                    continue
                job.function.delayed[job.priority] -= 1
                job.store_key = record.store_key
                if job.reduce_when is not None and job.when > now:
                    self._delay(job)
                else:
                    enqueue(job)
            for peer, hold in batch.holds:
                self._resolve(peer, hold, created(hold.jobs))
            if joiners:
                for job in batch.jobs:
                    for peer, hold in joiners.pop(job, ()):
                        self._resolve(peer, hold, pack_res(JOB_CREATED, job.handle))
            return
        reply = error_packet(ErrorCode.QUEUE_ERROR, error.encode(errors="replace")[:1024])
        for peer, hold in batch.holds:
            self._resolve(peer, hold, reply * len(hold.jobs))
        for job in batch.jobs:
            for peer, hold in joiners.pop(job, ()) if joiners else ():
                self._resolve(peer, hold, reply)
            if job.state != PENDING:
                continue
            f = job.function
            f.delayed[job.priority] -= 1
            job.state = DONE
            f.submitted -= 1
            self.submitted -= 1
            self._forget(job)

    def _join_committed(self, job: Job, record: StoredJob, peer: Peer, hold: Hold, error: str | None) -> None:
        if error is None:
            if job.store_key is not None:
                job.store_key = record.store_key
            elif record.store_key and job.state == DONE:
                self.committer.done(record.key)  # it ended before the commit, and its done had the wrong key
            self._resolve(peer, hold, pack_res(JOB_CREATED, job.handle))
        else:
            job.store_key = None
            self._resolve(peer, hold, error_packet(ErrorCode.QUEUE_ERROR, error.encode(errors="replace")[:1024]))


_SIZE = struct.Struct(">I").pack


def created(jobs: list[Job]) -> bytes:
    """JOB_CREATED for each of JOBS, as one string: handles of one length in a row (nearly all: they
    are counted up) share one packet head."""
    parts = []
    put = parts.append
    size = -1
    head = b""
    for job in jobs:
        handle = job.handle
        if len(handle) != size:
            size = len(handle)
            head = JOB_CREATED_HEAD + _SIZE(size)
        put(head)
        put(handle)
    return b"".join(parts)
