"""What a queued job costs: a million of them must fit in a few hundred MB, so a Job refers to no
object of its own beyond its handle, unique and data (no index key tuple, no copy of the function
name, no StoredJob after a replay or a commit). Measured figures: bench/memory_check.py."""

from __future__ import annotations

import asyncio
import gc

from geartrain.protocol.packets import T
from geartrain.server.group import GroupCommit
from geartrain.server.jobs import Job
from geartrain.server.store.base import StoredJob

from .helpers import Harness
from .test_group import FakeStore, _settle


def _own_objects(job: Job) -> set[int]:
    """ids of the containers and byte strings JOB refers to that are not shared constants."""
    shared = {id(b""), id(b"0"), id(job.function), id(())}
    return {id(o) for o in gc.get_referents(job)
            if isinstance(o, bytes | bytearray | tuple | list | dict | StoredJob) and id(o) not in shared}


def _fresh(text: bytes) -> bytes:
    return bytes(bytearray(text))  # a new object, as the parser makes for every packet


def test_a_queued_job_refers_only_to_its_handle_unique_and_data():
    h = Harness()
    c = h.peer()
    for ptype in (T.SUBMIT_JOB_BG, T.SUBMIT_JOB):
        unique, data = _fresh(b"u%d" % ptype), _fresh(b"payload")
        h.send(c, ptype, _fresh(b"resize"), unique, data)
        job = h.state.jobs[h.got(c)[0][1][0]]
        assert job.unique is unique and job.data is data
        own = _own_objects(job) - {id(job.clients)}  # a foreground job lists its client
        assert own == {id(job.handle), id(unique), id(data)}
        f = h.state.functions[b"resize"]
        assert any(key is unique for key in f.uniques)  # the index is keyed by the job's own unique
    assert not hasattr(job, "__dict__")


def test_a_replayed_job_keeps_its_store_key_not_the_record():
    h = Harness()
    done: list = []
    h.state.committer = type("C", (), {"done": lambda self, key: done.append(key)})()
    record = StoredJob(_fresh(b"f"), b"", _fresh(b"d"), 1, store_key=_fresh(b"geartrain:abc"))
    job = h.state.restore(record)
    assert isinstance(job, Job)
    assert _own_objects(job) == {id(job.handle), id(record.data), id(record.store_key)}
    w = h.worker(b"f")
    name, args = h.grab(w)
    h.send(w, T.WORK_COMPLETE, args[0], b"")
    assert done == [(b"geartrain:abc", b"f")]


def test_a_committed_job_keeps_its_store_key_not_the_record():
    async def main() -> None:
        store = FakeStore()
        h = Harness()
        h.state.committer = GroupCommit(store, loop=asyncio.get_running_loop(), on_jobs=h.state.jobs_committed)
        c = h.peer()
        h.send(c, T.SUBMIT_JOB_BG, b"f", b"", b"d")
        await _settle()
        job = h.state.jobs[h.got(c)[0][1][0]]
        assert job.store_key == b"generated-0"
        assert _own_objects(job) == {id(job.handle), id(job.data), id(job.store_key)}

    asyncio.run(main())


def test_progress_lives_with_the_run_and_goes_when_it_ends():
    """WORK_STATUS progress is kept by the worker running the job: a status query sees it, a new
    run starts from 0/0 (retry after the worker left, or after a timeout), and a finished run
    leaves nothing behind on the worker."""
    h = Harness(job_retries=5)
    c = h.peer()
    status = (b"0", b"0")

    def progress(handle: bytes) -> tuple[bytes, bytes]:
        h.send(c, T.GET_STATUS, handle)
        return h.got(c)[-1][1][3:5]

    a = h.submit(c, unique=b"a")
    w1 = h.worker(b"f")
    h.grab(w1)
    h.send(w1, T.WORK_STATUS, a, b"3", b"7")
    h.got(c)
    assert progress(a) == (b"3", b"7")
    h.state.disconnect(w1)  # the job goes back to the queue: a new run starts from 0/0
    assert progress(a) == status
    w2 = h.peer()
    h.send(w2, T.CAN_DO_TIMEOUT, b"f", b"5")
    h.grab(w2)
    h.send(w2, T.WORK_STATUS, a, b"1", b"2")
    h.got(c)
    h.tick(6)  # timed out: taken back and requeued
    assert progress(a) == status and w2.as_worker.progress == {}
    h.grab(w2)
    h.send(w2, T.WORK_STATUS, a, b"5", b"9")
    h.send(w2, T.WORK_COMPLETE, a, b"done")
    assert w2.as_worker.progress == {} and w2.as_worker.jobs == {}
