"""Work results from workers (WORK_*): progress and partial data forwarded, final results ending the job.

Each packet is looked up in the sending worker's own table of running jobs; the lifecycle ends the job
and tells its clients. A result for a job the worker does not run gets gearmand's ERROR, except the
late result of a job taken away from it on timeout, which is ignored quietly.
"""

from __future__ import annotations

from ..protocol.codec import pack_res
from ..protocol.packets import T
from .jobs import Peer
from .lifecycle import Lifecycle
from .outbox import Outbox
from .replies import DATA_NOT_FOUND, EXCEPTION_NOT_FOUND, JOB_NOT_FOUND


class Results:
    """What workers report: WORK_STATUS, WORK_DATA, WORK_WARNING, WORK_COMPLETE, WORK_FAIL, WORK_EXCEPTION."""

    def __init__(self, life: Lifecycle, out: Outbox) -> None:
        self.life = life
        self.out = out

    def _unknown(self, peer: Peer, handle: bytes, final: bool, error: bytes = JOB_NOT_FOUND) -> None:
        stale = peer.as_worker.stale
        if handle in stale:
            # the late result of a job taken away on timeout: ignore it quietly
            if final:
                stale.discard(handle)
            return
        self.out.send(peer, error)

    def forward_packet(self, ptype: int, peer: Peer, args: tuple[bytes, ...]) -> None:
        """WORK_DATA and WORK_WARNING: passed on to the job's clients."""
        job = peer.as_worker.jobs.get(args[0])
        if job is None:
            self._unknown(peer, args[0], False, DATA_NOT_FOUND)
            return
        if job.clients:
            packet = pack_res(ptype, *args)
            for client in job.clients:
                self.out.send(client, packet)

    def status_packet(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        role = peer.as_worker
        job = role.jobs.get(args[0])
        if job is None:
            self._unknown(peer, args[0], False)
            return
        role.progress[args[0]] = (args[1], args[2])
        if job.clients:
            packet = pack_res(T.WORK_STATUS, *args)
            for client in job.clients:
                self.out.send(client, packet)

    def complete_packet(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        job = peer.as_worker.jobs.get(args[0])
        if job is None:
            self._unknown(peer, args[0], True)
        else:
            self.life.complete(job, args[1])

    def fail_packet(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        job = peer.as_worker.jobs.get(args[0])
        if job is None:
            self._unknown(peer, args[0], True)
        else:
            self.life.fail(job, reported=True)

    def exception_packet(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        job = peer.as_worker.jobs.get(args[0])
        if job is None:
            self._unknown(peer, args[0], True, EXCEPTION_NOT_FOUND)
        else:
            self.life.raise_(job, args[1])
