"""Work results (WORK_*) and how jobs end or come back: completion, failure, exception, abandon, retry.

A part of State (a mixin: every method works on the State's attributes). Results are forwarded to
every attached client; a finished job leaves every index (and the durable store, via group.py) in
``_forget``. A job whose worker left goes back to the head of its queue, or fails after ``-j`` tries.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from ..protocol.codec import pack_res
from ..protocol.packets import T
from .jobs import DELAYED, DONE, QUEUED, TIME_BUCKETS, Job, Peer
from .replies import (
    BIG_PART,
    DATA_NOT_FOUND,
    EXCEPTION_NOT_FOUND,
    FAILED,
    FIRST_BOUND,
    JOB_NOT_FOUND,
    NUL,
    WORK_COMPLETE_HEAD,
    WORK_FAIL,
    compact_queue,
)


class Results:
    """How jobs end (WORK_* results, cancel, abandon) or come back (retry).

    A part of State: it works on State's ``jobs``, the counters and the ``committer``, on each job's
    function (counters, histograms, unique index) and clients, and calls ``_enqueue`` for a retry."""

    def _unknown_result(self, peer: Peer, handle: bytes, final: bool, error: bytes = JOB_NOT_FOUND) -> None:
        if handle in peer.stale:
            # the late result of a job taken away on timeout: ignore it quietly
            if final:
                peer.stale.discard(handle)
            return
        self.send(peer, error)

    def _work_forward(self, ptype: int, peer: Peer, args: tuple[bytes, ...]) -> None:
        job = peer.jobs.get(args[0])
        if job is None:
            self._unknown_result(peer, args[0], False, DATA_NOT_FOUND)
            return
        if job.clients:
            packet = pack_res(ptype, *args)
            for client in job.clients:
                self.send(client, packet)

    def _work_status(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        job = peer.jobs.get(args[0])
        if job is None:
            self._unknown_result(peer, args[0], False)
            return
        peer.progress[args[0]] = (args[1], args[2])
        if job.clients:
            packet = pack_res(T.WORK_STATUS, *args)
            for client in job.clients:
                self.send(client, packet)

    def _work_complete(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        # the hot path: the result's forwarding, the send and the common case of _forget are inline
        handle = args[0]
        job = peer.jobs.pop(handle, None)
        if peer.progress:
            peer.progress.pop(handle, None)
        if job is None:
            self._unknown_result(peer, handle, True)
            return
        f = job.function
        ran = self.now - job.started_at  # run-time histogram, inline as the queue-wait one in _grab
        f.run_hist[0 if ran <= FIRST_BOUND else bisect_left(TIME_BUCKETS, ran)] += 1
        f.run_sum += ran
        f.running -= 1
        f.completed += 1
        self.completed += 1
        job.worker = None
        job.state = DONE
        clients = job.clients
        if clients:
            result = args[1]
            if len(result) >= BIG_PART:  # a big result goes out as its own part: written, never copied
                head = b"".join((WORK_COMPLETE_HEAD, (len(handle) + 1 + len(result)).to_bytes(4, "big"), handle, NUL))
                for client in clients:
                    self.send_parts(client, head, result)
                    client.client_jobs.pop(job, None)
            else:
                packet = b"".join((WORK_COMPLETE_HEAD, (len(handle) + 1 + len(result)).to_bytes(4, "big"), handle,
                                   NUL, result))
                dirty = self.dirty
                for client in clients:
                    if not client.closed:
                        out = client.out
                        if not out:
                            dirty.append(client)
                        out.append(packet)
                    client.client_jobs.pop(job, None)
            job.clients = ()
        if job.unique or job.store_key is not None:
            self._forget(job)
        elif self.jobs.get(handle) is job:
            del self.jobs[handle]

    def _end_run(self, peer: Peer, handle: bytes, not_found: bytes = JOB_NOT_FOUND) -> Job | None:
        """Take the job HANDLE off PEER after its final result (fail, exception) and record its run time;
        None, with the error sent, if PEER does not run it. (_work_complete, the hot path, does this inline.)"""
        job = peer.jobs.pop(handle, None)
        if peer.progress:
            peer.progress.pop(handle, None)
        if job is None:
            self._unknown_result(peer, handle, True, not_found)
            return None
        f = job.function
        ran = self.now - job.started_at
        f.run_hist[0 if ran <= FIRST_BOUND else bisect_left(TIME_BUCKETS, ran)] += 1
        f.run_sum += ran
        f.running -= 1
        job.worker = None
        return job

    def _work_fail(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        job = self._end_run(peer, args[0])
        if job is not None:
            self._end(job, FAILED)

    def _work_exception(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        job = self._end_run(peer, args[0], EXCEPTION_NOT_FOUND)
        if job is None:
            return
        if job.clients:
            packet = pack_res(T.WORK_EXCEPTION, *args)
            fail = pack_res(WORK_FAIL, job.handle)
            for client in job.clients:
                self.send(client, packet if client.exceptions else fail)
        job.function.exceptions += 1
        self.exceptions += 1
        job.state = DONE
        self._forget(job)

    def _end(self, job: Job, how: str) -> None:
        """Finish a job that is no longer queued or running: tell its clients WORK_FAIL and forget it."""
        if job.clients:
            packet = pack_res(WORK_FAIL, job.handle)
            for client in job.clients:
                self.send(client, packet)
        job.function.failed += 1
        self.failed += 1
        job.state = DONE
        self._forget(job)

    def _forget(self, job: Job) -> None:
        """Remove a finished job from every index (and from the durable store)."""
        handle = job.handle
        if self.jobs.get(handle) is job:
            del self.jobs[handle]
        unique = job.unique
        if unique:
            key: Any = unique if unique != b"-" else (job.data,)
            uniques = job.function.uniques
            if uniques.get(key) is job:
                del uniques[key]
        if job.clients:
            for client in job.clients:
                client.client_jobs.pop(job, None)
            job.clients = ()
        if job.store_key is not None:
            self.committer.done(job.store_id)
            job.store_key = None

    def _abandon(self, job: Job) -> None:
        """A queued foreground job whose every client left: nobody wants it, drop it (as gearmand)."""
        f = job.function
        queued = job.state == QUEUED
        if queued:
            f.queued[job.priority] -= 1
        elif job.state == DELAYED:
            f.delayed[job.priority] -= 1
        job.state = DONE
        self.dropped += 1
        self._forget(job)
        if queued:
            compact_queue(f, job.priority)

    def _retry(self, job: Job, why: str) -> None:
        """A job came back from a worker that did not finish it: requeue at the head, or fail it after -j tries."""
        f = job.function
        job.retries += 1
        if not job.clients and not job.background:
            job.state = DONE
            self.dropped += 1
            self._forget(job)
            return
        if self.job_retries > 0 and job.retries >= self.job_retries:
            self.notice(f"Dropped job due to max retry count: {job.handle.decode(errors='replace')} "
                        f"{f.name.decode(errors='replace')} after {job.retries} tries ({why})")
            self._end(job, FAILED)
            return
        f.retried += 1
        self.retried += 1
        self._enqueue(job, head=True)
