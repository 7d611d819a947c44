"""Submitting jobs: SUBMIT_JOB* packets, unique coalescing, and the durable store's commit.

A new job is created and placed by the lifecycle; a submission with the function and unique of a job
the server holds joins it instead. A background job under a durable store waits ``PENDING`` until
group.py commits the batch it went in (``jobs_committed``). Its JOB_CREATED waits in a placeholder
(``Hold``) in the submitter's output; one Hold covers every job a connection submitted in a row into
the same batch, so a burst of submits costs one placeholder, not one each.
"""

from __future__ import annotations

import struct
from functools import partial
from typing import Any

from ..protocol.codec import error_packet, pack_res
from ..protocol.packets import MAX_UNIQUE_SIZE, NORMAL, ErrorCode, T
from .group import Batch
from .jobs import DONE, PENDING, Job, Peer
from .lifecycle import JOB_CREATED_HEAD, Lifecycle
from .outbox import Hold, Outbox
from .replies import QUEUE_FULL, UNIQUE_TOO_LARGE, atoi
from .store.base import StoredJob
from .workers import Acl, refused

_SIZE = struct.Struct(">I").pack


def queue_error(error: str) -> bytes:
    """ERROR QUEUE_ERROR with the store's ERROR text: the job was not created."""
    return error_packet(ErrorCode.QUEUE_ERROR, error.encode(errors="replace")[:1024])


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


class Submitting:
    """How jobs come in: every SUBMIT_JOB* packet, coalescing, the store commit."""

    def __init__(self, life: Lifecycle, out: Outbox) -> None:
        self.life = life
        self.out = out
        self.committer: Any = None  # group.GroupCommit for a durable store, None for memory
        self.acl: Acl | None = None  # consulted on every submission; None allows everything
        # replies to submissions that joined a job still waiting for its store commit (the job's own
        # submitter's reply waits in its batch: group.Batch.holds)
        self.pending_holds: dict[Job, list[tuple[Peer, Hold]]] = {}

    def epoch_packet(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        name, unique, when, data = args
        self.submit(NORMAL, True, peer, (name, unique, data), when=atoi(when))

    def reduce_packet(self, background: bool, peer: Peer, args: tuple[bytes, ...]) -> None:
        name, unique, reducer, _aggregator, data = args
        self.submit(NORMAL, background, peer, (name, unique, data), reducer=reducer)

    def submit(self, priority: int, background: bool, peer: Peer | None, args: tuple[bytes, ...],
               reducer: bytes = b"", when: int = 0, store: bool = False) -> Job | None:
        """Queue a job of ARGS (function name, unique, data) or join the job with the same function and unique,
        and reply JOB_CREATED; None if it was refused (an error was sent). The SUBMIT_JOB* packets come here
        straight from the dispatch table.

        PEER None is an internal submission (a cron run, a replayed job): no reply, no client, and not filed
        with the durable store unless STORE (a failed job requeued from the registry).
        """
        name, unique, data = args
        life = self.life
        if len(unique) > MAX_UNIQUE_SIZE:
            if peer is not None:
                self.out.send(peer, UNIQUE_TOO_LARGE)
            return None
        if self.acl is not None and peer is not None and refused(self.out, self.acl, peer, "submit", name):
            return None
        f = life.functions.get(name)
        if f is None:
            f = life.function(name)
        key: Any = None
        if unique and (data or unique != b"-"):
            key = unique if unique != b"-" else (data,)
            job = f.uniques.get(key)
            if job is not None:
                self._join(peer, job, background)
                return job
        limit = f.maxqueue[priority]
        if limit and f.total >= limit:
            if peer is not None:
                self.out.send(peer, QUEUE_FULL)
            return None
        if peer is not None and life.fast and not reducer and not when and not (background and self.committer):
            return life.admit_plain(f, unique, data, priority, background, key, peer)
        job = life.create(f, unique, data, priority, background, reducer, when, key,
                          None if background else peer)
        if peer is None:
            if store and background and self.committer is not None:
                self._file(None, job)
            else:
                life.place(job)
            return job
        if background and self.committer is not None:
            self._file(peer, job)  # durable: JOB_CREATED only once the store has it
            return job
        handle = job.handle
        self.out.send(peer, b"".join((JOB_CREATED_HEAD, _SIZE(len(handle)), handle)))
        life.place(job)
        return job

    def _file(self, peer: Peer | None, job: Job) -> None:
        """Hand a new background job to the store's next batch; PEER's JOB_CREATED waits in a Hold until then."""
        self.life.pend(job)
        rw = job.reduce_when
        record = StoredJob(job.function.name, job.unique, job.data, job.priority) if rw is None else self.record(job)
        batch = self.committer.add_job(job, record)
        if peer is None:
            return
        out = peer.out
        if out:
            hold = out[-1]
            if type(hold) is Hold and hold.batch is batch:  # the last reply waits for the same batch
                hold.jobs.append(job)
                return
        hold = self.out.hold(peer)
        hold.batch = batch
        hold.jobs.append(job)
        batch.holds.append((peer, hold))

    def _join(self, peer: Peer | None, job: Job, background: bool) -> None:
        """A submission with the unique of an existing job: attach to it instead of queueing another."""
        if peer is None:
            return
        if not background:
            self.life.attach(job, peer)
        elif not job.background:
            # a background submission joined a foreground job: it must now survive its clients leaving
            job.background = True
            if self.committer is not None and job.store_key is None and job.state != PENDING:
                job.store_key = b""  # its done goes out even if it ends before the commit
                hold = self.out.hold(peer)
                record = self.record(job)
                self.committer.add(record, partial(self._join_committed, job, record, peer, hold))
                return
        if job.state == PENDING:
            self.pending_holds.setdefault(job, []).append((peer, self.out.hold(peer)))
        else:
            self.out.send(peer, pack_res(T.JOB_CREATED, job.handle))

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
        life = self.life
        if error is None:
            commit = life.commit
            for job, record in zip(batch.jobs, batch.job_records, strict=True):
                if job.state == PENDING:
                    commit(job, record.store_key)
            for peer, hold in batch.holds:
                self.out.resolve(peer, hold, created(hold.jobs))
            if joiners:
                for job in batch.jobs:
                    for peer, hold in joiners.pop(job, ()):
                        self.out.resolve(peer, hold, pack_res(T.JOB_CREATED, job.handle))
            return
        reply = queue_error(error)
        for peer, hold in batch.holds:
            self.out.resolve(peer, hold, reply * len(hold.jobs))
        for job in batch.jobs:
            for peer, hold in joiners.pop(job, ()) if joiners else ():
                self.out.resolve(peer, hold, reply)
            if job.state == PENDING:
                life.refuse(job)

    def _join_committed(self, job: Job, record: StoredJob, peer: Peer, hold: Hold, error: str | None) -> None:
        if error is None:
            if job.store_key is not None:
                job.store_key = record.store_key
            elif record.store_key and job.state == DONE:
                self.committer.done(record.key)  # it ended before the commit, and its done had the wrong key
            self.out.resolve(peer, hold, pack_res(T.JOB_CREATED, job.handle))
        else:
            job.store_key = None
            self.out.resolve(peer, hold, queue_error(error))
