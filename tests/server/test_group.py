"""Group commit against a fake Store: one add per loop turn, JOB_CREATED only after the commit, order kept;
the other writes of stored jobs (done, retry, results, registry, policies) in one settlement after the adds,
one write per row, refused ones tried again without overtaking or being overtaken by later writes of their row."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence

import pytest

from geartrain.protocol.packets import T
from geartrain.server.group import MAX_BATCH, GroupCommit
from geartrain.server.store.base import (
    Extras,
    FailedJob,
    KeptResult,
    Retry,
    Settlement,
    Store,
    StoredJob,
    StoreError,
)

from .helpers import Harness


class FakeStore(Store):
    """Records every call; can be told to fail; add() waits for a gate when one is set."""

    name = "fake"

    def __init__(self) -> None:
        self.rows: dict[tuple[bytes, bytes], StoredJob] = {}
        self.adds: list[list[StoredJob]] = []
        self.dones: list[list[tuple[bytes, bytes]]] = []
        self.fail: str | None = None
        self.gate: asyncio.Event | None = None
        self.settlements: list[Settlement] = []  # every settlement written, in order
        self.calls: list[str] = []  # "add" and "settle", in order
        self.kept: dict[bytes, KeptResult] = {}
        self.registry: dict[int, FailedJob] = {}
        self.policies: dict[bytes, str] = {}
        #: called with each settlement: a text to refuse it with (StoreError), or None
        self.refuse: Callable[[Settlement], str | None] | None = None

    async def open(self) -> None:
        return None

    async def replay(self) -> list[StoredJob]:
        return list(self.rows.values())

    async def add(self, jobs: Sequence[StoredJob]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise StoreError(self.fail)
        self.adds.append(list(jobs))
        self.calls.append("add")
        for job in jobs:
            if not job.unique and not job.store_key:
                job.store_key = b"generated-%d" % len(self.rows)
            self.rows[job.key] = job

    async def settle(self, batch: Settlement) -> None:
        """As a real store writes it (a retry of a row that is gone changes nothing)."""
        why = self.refuse(batch) if self.refuse is not None else None
        if why:
            raise StoreError(why)
        if batch.done:
            await self.done(batch.done)
        self.settlements.append(batch)
        self.calls.append("settle")
        for r in batch.retried:
            row = self.rows.get(r.key)
            if row is not None:
                row.when, row.tries, row.history = math.ceil(r.when), r.tries, r.history
        self.kept.update((r.handle, r) for r in batch.kept)
        for handle in batch.unkept:
            self.kept.pop(handle, None)
        self.registry.update((f.id, f) for f in batch.buried)
        for id_ in batch.unburied:
            self.registry.pop(id_, None)
        for function, text in batch.policies.items():
            if text:
                self.policies[function] = text
            else:
                self.policies.pop(function, None)

    async def done(self, keys: Sequence[tuple[bytes, bytes]]) -> None:
        self.dones.append(list(keys))
        for key in keys:
            self.rows.pop(key, None)

    async def replay_extras(self) -> Extras:
        return Extras()

    async def close(self) -> None:
        return None


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def _setup(store: FakeStore) -> Harness:
    h = Harness()
    h.state.committer = GroupCommit(store, loop=asyncio.get_running_loop(), on_jobs=h.state.jobs_committed)
    return h


def test_background_submits_of_one_turn_are_one_add_and_created_after_commit():
    async def main() -> None:
        store = FakeStore()
        h = _setup(store)
        c = h.peer()
        for i in range(5):
            h.send(c, T.SUBMIT_JOB_BG, b"f", b"u%d" % i, b"d")
        h.send(c, T.ECHO_REQ, b"after")
        assert h.raw(c) == b""  # nothing before the commit, not even the later ECHO_RES
        await _settle()
        assert len(store.adds) == 1 and [j.unique for j in store.adds[0]] == [b"u%d" % i for i in range(5)]
        got = h.got(c)
        assert [name for name, _ in got] == ["JOB_CREATED"] * 5 + ["ECHO_RES"]
        assert h.state.functions[b"f"].total == 5

    asyncio.run(main())


def test_a_burst_of_submits_waits_in_one_hold_per_run_and_keeps_its_order():
    async def main() -> None:
        store = FakeStore()
        h = _setup(store)
        c = h.peer()
        for i in range(5):
            h.send(c, T.SUBMIT_JOB_BG, b"f", b"u%d" % i, b"d")
        h.send(c, T.ECHO_REQ, b"between")
        for i in range(5, 7):
            h.send(c, T.SUBMIT_JOB_BG, b"f", b"u%d" % i, b"d")
        assert c.holds == 2  # one placeholder for the five, one for the two after the ECHO
        assert len(c.out) == 3
        assert h.raw(c) == b""
        await _settle()
        assert len(store.adds) == 1 and [j.unique for j in store.adds[0]] == [b"u%d" % i for i in range(7)]
        got = h.got(c)
        assert [name for name, _ in got] == ["JOB_CREATED"] * 5 + ["ECHO_RES"] + ["JOB_CREATED"] * 2
        handles = [args[0] for name, args in got if name == "JOB_CREATED"]
        assert [h.state.jobs[x].unique for x in handles] == [b"u%d" % i for i in range(7)]
        assert c.holds == 0 and c.out == []

    asyncio.run(main())


def test_a_connection_submitting_across_two_batches_gets_its_replies_in_order():
    async def main() -> None:
        store = FakeStore()
        store.gate = asyncio.Event()
        h = _setup(store)
        c, other = h.peer(), h.peer()
        h.send(c, T.SUBMIT_JOB_BG, b"f", b"a", b"d")
        await _settle()  # the batch of a is in flight
        h.send(c, T.SUBMIT_JOB_BG, b"f", b"b", b"d")  # the next batch: a hold of its own
        h.send(other, T.SUBMIT_JOB_BG, b"f", b"c", b"d")
        assert c.holds == 2
        store.gate.set()
        await _settle()
        assert [[j.unique for j in batch] for batch in store.adds] == [[b"a"], [b"b", b"c"]]
        handles = [args[0] for _, args in h.got(c)]
        assert [h.state.jobs[x].unique for x in handles] == [b"a", b"b"]
        assert h.names(other) == ["JOB_CREATED"]

    asyncio.run(main())


def test_a_refused_batch_answers_every_job_of_a_shared_hold():
    async def main() -> None:
        store = FakeStore()
        store.fail = "disk on fire"
        h = _setup(store)
        c = h.peer()
        for u in (b"a", b"b", b"c"):
            h.send(c, T.SUBMIT_JOB_BG, b"f", u, b"d")
        h.send(c, T.ECHO_REQ, b"after")
        await _settle()
        assert h.got(c) == [("ERROR", (b"QUEUE_ERROR", b"disk on fire"))] * 3 + [("ECHO_RES", (b"after",))]
        f = h.state.functions[b"f"]
        assert f.total == 0 and f.uniques == {} and h.state.jobs == {} and h.state.submitted == 0

    asyncio.run(main())


def test_a_burst_bigger_than_a_batch_is_committed_in_order_in_full_batches():
    async def main() -> None:
        store = FakeStore()
        h = _setup(store)
        c = h.peer()
        n = 2 * MAX_BATCH + 100
        for i in range(n):
            h.send(c, T.SUBMIT_JOB_BG, b"f", b"u%d" % i, b"d")
        assert c.holds == 3  # one placeholder per batch
        await _settle()
        assert [len(batch) for batch in store.adds] == [MAX_BATCH, MAX_BATCH, 100]
        assert [j.unique for batch in store.adds for j in batch] == [b"u%d" % i for i in range(n)]
        handles = [args[0] for _, args in h.got(c)]
        assert [h.state.jobs[x].unique for x in handles] == [b"u%d" % i for i in range(n)]

    asyncio.run(main())


def test_a_delete_filed_before_a_batch_filled_up_goes_with_it_and_before_a_later_add_of_its_key():
    async def main() -> None:
        store = FakeStore()
        h = _setup(store)
        c = h.peer()
        w = h.worker(b"f")
        h.send(c, T.SUBMIT_JOB_BG, b"f", b"k", b"old")
        await _settle()
        h.got(c)
        name, args = h.grab(w)
        h.send(w, T.WORK_COMPLETE, args[0], b"")  # the delete of (k, f) is filed...
        for i in range(MAX_BATCH + 1):
            h.send(c, T.SUBMIT_JOB_BG, b"f", b"u%d" % i, b"d")  # ...then a full batch and one more job
        h.send(c, T.SUBMIT_JOB_BG, b"f", b"k", b"new")  # and k again, in that next batch
        for _ in range(5):
            await _settle()
        assert [len(batch) for batch in store.adds] == [1, MAX_BATCH, 2]
        assert store.dones == [[(b"k", b"f")]]  # with the full batch, before the new add of k
        assert store.rows[(b"k", b"f")].data == b"new"
        assert len(store.rows) == MAX_BATCH + 2
        assert [name for name, _ in h.got(c)] == ["JOB_CREATED"] * (MAX_BATCH + 2)

    asyncio.run(main())


def test_foreground_jobs_skip_the_store_and_are_not_held():
    async def main() -> None:
        store = FakeStore()
        h = _setup(store)
        c = h.peer()
        h.send(c, T.SUBMIT_JOB, b"f", b"", b"d")
        assert h.names(c) == ["JOB_CREATED"]
        await _settle()
        assert store.adds == []

    asyncio.run(main())


def test_store_error_answers_queue_error_and_does_not_queue():
    async def main() -> None:
        store = FakeStore()
        store.fail = "disk on fire"
        h = _setup(store)
        c = h.peer()
        w = h.worker(b"f")
        h.send(c, T.SUBMIT_JOB_BG, b"f", b"u", b"d")
        await _settle()
        assert h.got(c) == [("ERROR", (b"QUEUE_ERROR", b"disk on fire"))]
        assert h.grab(w) == ("NO_JOB", ())
        assert h.state.functions[b"f"].total == 0
        store.fail = None
        h.send(c, T.SUBMIT_JOB_BG, b"f", b"u", b"d")  # the unique is free again
        await _settle()
        assert h.names(c) == ["JOB_CREATED"]

    asyncio.run(main())


def test_done_after_complete_with_the_stores_key():
    async def main() -> None:
        store = FakeStore()
        h = _setup(store)
        c = h.peer()
        w = h.worker(b"f")
        h.send(c, T.SUBMIT_JOB_BG, b"f", b"", b"no unique")
        await _settle()
        handle = h.got(c)[0][1][0]
        assert len(store.rows) == 1
        h.grab(w)
        h.send(w, T.WORK_COMPLETE, handle, b"")
        await _settle()
        assert store.rows == {}
        assert store.dones == [[(b"generated-0", b"f")]]

    asyncio.run(main())


def test_submits_during_a_commit_go_into_the_next_batch():
    async def main() -> None:
        store = FakeStore()
        store.gate = asyncio.Event()
        h = _setup(store)
        c1, c2 = h.peer(), h.peer()
        h.send(c1, T.SUBMIT_JOB_BG, b"f", b"a", b"d")
        await _settle()  # the first commit is now in flight, blocked on the gate
        h.send(c2, T.SUBMIT_JOB_BG, b"f", b"b", b"d")
        h.send(c2, T.SUBMIT_JOB_BG, b"f", b"c", b"d")
        h.send(c1, T.SUBMIT_JOB_BG, b"f", b"a", b"d")  # joins the pending job: answered after its commit
        await _settle()
        assert h.raw(c1) == b"" and h.raw(c2) == b""
        store.gate.set()
        await _settle()
        assert [[j.unique for j in batch] for batch in store.adds] == [[b"a"], [b"b", b"c"]]
        assert h.names(c1) == ["JOB_CREATED", "JOB_CREATED"]
        assert h.names(c2) == ["JOB_CREATED", "JOB_CREATED"]

    asyncio.run(main())


def test_background_joining_foreground_job_is_stored():
    async def main() -> None:
        store = FakeStore()
        h = _setup(store)
        fg, bg = h.peer(), h.peer()
        h.send(fg, T.SUBMIT_JOB, b"f", b"u", b"d")
        handle = h.got(fg)[0][1][0]
        h.send(bg, T.SUBMIT_JOB_BG, b"f", b"u", b"d")
        assert h.raw(bg) == b""
        await _settle()
        assert h.got(bg) == [("JOB_CREATED", (handle,))]
        assert list(store.rows) == [(b"u", b"f")]

    asyncio.run(main())


def test_restore_replayed_jobs_and_done_on_finish():
    h = Harness()
    done: list = []

    class Recorder:
        def add(self, record, callback):  # pragma: no cover - not called on replay
            raise AssertionError("replayed jobs are not stored again")

        def done(self, key):
            done.append(key)

    h.state.committer = Recorder()
    h.state.restore(StoredJob(b"f", b"u1", b"d1", 0))
    h.state.restore(StoredJob(b"f", b"u2", b"d2", 2, when=int(h.state.now) + 50))
    w = h.worker(b"f")
    name, args = h.grab(w)
    assert name == "JOB_ASSIGN" and args[2] == b"d1"
    assert h.grab(w) == ("NO_JOB", ())
    h.send(w, T.WORK_COMPLETE, args[0], b"")
    assert done == [(b"u1", b"f")]
    h.tick(50)
    assert h.grab(w)[1][2] == b"d2"


class FailingDoneStore(FakeStore):
    """done() raises StoreError for the first FAILURES calls."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.refused: list[list[tuple[bytes, bytes]]] = []

    async def done(self, keys: Sequence[tuple[bytes, bytes]]) -> None:
        if self.failures:
            self.failures -= 1
            self.refused.append(list(keys))
            raise StoreError("connection lost")
        await super().done(keys)


async def _until(predicate, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)


def test_a_failed_delete_is_kept_and_retried_not_dropped():
    async def main() -> None:
        store = FailingDoneStore(failures=1)
        h = _setup(store)
        c = h.peer()
        w = h.worker(b"f")
        for u in (b"a", b"b"):
            h.send(c, T.SUBMIT_JOB_BG, b"f", u, b"d")
        await _settle()
        assert h.names(c) == ["JOB_CREATED", "JOB_CREATED"]
        for _ in range(2):
            name, args = h.grab(w)
            h.send(w, T.WORK_COMPLETE, args[0], b"")
        await _settle()
        assert store.refused == [[(b"a", b"f"), (b"b", b"f")]]
        assert len(store.rows) == 2  # still there: the delete failed
        await _until(lambda: not store.rows)
        assert store.rows == {}  # retried after the backoff: nothing left to run again after a restart
        assert store.dones == [[(b"a", b"f"), (b"b", b"f")]]

    asyncio.run(main())


def test_failed_deletes_get_one_more_try_at_shutdown():
    async def main() -> None:
        store = FailingDoneStore(failures=1)
        h = _setup(store)
        c = h.peer()
        w = h.worker(b"f")
        h.send(c, T.SUBMIT_JOB_BG, b"f", b"a", b"d")
        await _settle()
        name, args = h.grab(w)
        h.send(w, T.WORK_COMPLETE, args[0], b"")
        await _settle()
        assert store.refused and store.rows
        await h.state.committer.drain()  # before the backoff ran out
        assert store.rows == {}

    asyncio.run(main())


def test_resubmitting_a_finished_unique_keeps_the_new_row():
    """The delete of a finished job and the add of a new job with the same key in one batch: the add
    upserts the row, so the older delete must not run after it (it would lose the new job)."""

    async def main() -> None:
        store = FakeStore()
        h = _setup(store)
        c = h.peer()
        w = h.worker(b"f")
        h.send(c, T.SUBMIT_JOB_BG, b"f", b"u", b"first")
        await _settle()
        name, args = h.grab(w)
        h.send(w, T.WORK_COMPLETE, args[0], b"")  # done (u, f) queued...
        h.send(c, T.SUBMIT_JOB_BG, b"f", b"u", b"second")  # ...and add (u, f) in the same turn
        await _settle()
        assert [n for n, _ in h.got(c)] == ["JOB_CREATED", "JOB_CREATED"]
        assert [job.data for job in store.rows.values()] == [b"second"]

    asyncio.run(main())


@pytest.mark.parametrize("full_batch", [False, True], ids=["meanwhile", "into_a_full_batch_waiting_its_turn"])
def test_a_failed_delete_does_not_remove_a_job_added_again(full_batch):
    async def main() -> None:
        store = FailingDoneStore(failures=1)
        gate = asyncio.Event()
        real_done = store.done

        async def slow_done(keys):
            await gate.wait()
            await real_done(keys)

        store.done = slow_done  # type: ignore[method-assign]
        h = _setup(store)
        c = h.peer()
        w = h.worker(b"f")
        h.send(c, T.SUBMIT_JOB_BG, b"f", b"u", b"first")
        await _settle()
        name, args = h.grab(w)
        h.send(w, T.WORK_COMPLETE, args[0], b"")
        await _settle()  # the delete is in flight, waiting on the gate
        h.send(c, T.SUBMIT_JOB_BG, b"f", b"u", b"second")
        if full_batch:
            for i in range(MAX_BATCH):  # the batch holding u fills up and waits in line
                h.send(c, T.SUBMIT_JOB_BG, b"f", b"x%d" % i, b"d")
            assert len(h.state.committer.full) == 1
        gate.set()  # ...and now the delete fails
        await _until(lambda: len(store.adds) == (3 if full_batch else 2))
        await asyncio.sleep(0.5)  # past the first retry
        assert store.rows[(b"u", b"f")].data == b"second"
        if not full_batch:
            assert [job.data for job in store.rows.values()] == [b"second"]

    asyncio.run(main())


def test_a_delete_dropped_for_an_add_that_then_fails_is_done_after_all():
    """A finished job's delete gives way to a new add of its key; if that add fails, the old row
    (a finished job) must still be deleted."""

    async def main() -> None:
        store = FakeStore()
        h = _setup(store)
        c = h.peer()
        w = h.worker(b"f")
        h.send(c, T.SUBMIT_JOB_BG, b"f", b"u", b"first")
        await _settle()
        name, args = h.grab(w)
        store.fail = "disk full"
        h.send(w, T.WORK_COMPLETE, args[0], b"")
        h.send(c, T.SUBMIT_JOB_BG, b"f", b"u", b"second")
        await _settle()
        assert [n for n, _ in h.got(c)] == ["JOB_CREATED", "ERROR"]
        store.fail = None
        await _until(lambda: not store.rows)
        assert store.rows == {}

    asyncio.run(main())


# -- the other writes: one settlement per batch, one write per row -------------------------------------


def _committer(store: FakeStore) -> GroupCommit:
    return GroupCommit(store, loop=asyncio.get_running_loop())


def _record(unique: bytes) -> StoredJob:
    return StoredJob(b"f", unique, b"d", 1)


def _kept(handle: bytes, data: bytes = b"r") -> KeptResult:
    return KeptResult(handle, b"f", b"u", "complete", data, 1.0, 2e9)


def _failed(id_: int) -> FailedJob:
    return FailedJob(id_, b"H:%d" % id_, b"f", b"u%d" % id_, b"d", 1, 1, True, 1.0)


def _retry(unique: bytes, tries: int = 1) -> Retry:
    return Retry((unique, b"f"), 1_900_000_000.5, tries, b"[]")


async def _stored(store: FakeStore, gc: GroupCommit, *uniques: bytes) -> None:
    for u in uniques:
        gc.add(_record(u), lambda error: None)
    await _settle()
    assert all((u, b"f") in store.rows for u in uniques)


def test_every_kind_of_write_goes_in_one_settlement_after_the_adds_of_its_turn():
    async def main() -> None:
        store = FakeStore()
        gc = _committer(store)
        await _stored(store, gc, b"a", b"b", b"c")
        store.calls.clear()
        answers: list = []
        gc.add(_record(b"new"), answers.append)
        gc.done((b"a", b"f"))
        gc.retry(_retry(b"b", 2))
        gc.keep(_kept(b"H:1"))
        gc.unkeep(b"H:0")
        gc.bury(_failed(5), (b"c", b"f"))
        gc.unbury(4)
        gc.policy(b"f", "tries=3")
        gc.policy(b"g", "")
        await _settle()
        assert store.calls == ["add", "settle"] and answers == [None]
        (batch,) = store.settlements[-1:]
        assert sorted(batch.done) == [(b"a", b"f"), (b"c", b"f")]
        assert batch.retried == [_retry(b"b", 2)] and batch.kept == [_kept(b"H:1")] and batch.unkept == [b"H:0"]
        assert batch.buried == [_failed(5)] and batch.unburied == [4]
        assert batch.policies == {b"f": "tries=3", b"g": ""}
        assert set(store.rows) == {(b"b", b"f"), (b"new", b"f")} and store.rows[(b"b", b"f")].tries == 2

    asyncio.run(main())


def test_a_later_write_of_a_row_replaces_an_earlier_one_but_a_retry_never_replaces_a_done():
    async def main() -> None:
        store = FakeStore()
        gc = _committer(store)
        await _stored(store, gc, b"r", b"d")
        gc.keep(_kept(b"H:1"))
        gc.unkeep(b"H:1")
        gc.unkeep(b"H:2")
        gc.keep(_kept(b"H:2", b"second"))
        gc.retry(_retry(b"r"))
        gc.done((b"r", b"f"))  # a retry then a done: the done wins
        gc.done((b"d", b"f"))
        gc.retry(_retry(b"d"))  # a done then a retry: the row is gone, the retry is moot
        gc.bury(_failed(1))
        gc.unbury(1)
        gc.policy(b"f", "a")
        gc.policy(b"f", "b")
        await _settle()
        (batch,) = store.settlements
        assert sorted(batch.done) == [(b"d", b"f"), (b"r", b"f")] and batch.retried == []
        assert batch.unkept == [b"H:1"] and batch.kept == [_kept(b"H:2", b"second")]
        assert batch.buried == [] and batch.unburied == [1] and batch.policies == {b"f": "b"}

    asyncio.run(main())


def test_a_refused_settlement_is_written_whole_after_the_backoff():
    async def main() -> None:
        store = FakeStore()
        gc = _committer(store)
        await _stored(store, gc, b"a", b"b", b"c")
        refusals: list[Settlement] = []
        store.refuse = lambda batch: "connection lost" if not refusals and not refusals.append(batch) else None
        gc.done((b"a", b"f"))
        gc.retry(_retry(b"b"))
        gc.keep(_kept(b"H:1"))
        gc.bury(_failed(1), (b"c", b"f"))
        gc.policy(b"f", "p")
        await _settle()
        assert len(refusals) == 1 and store.settlements == [] and len(store.rows) == 3
        await _until(lambda: store.settlements)
        (batch,) = store.settlements
        assert batch == Settlement(done=[(b"a", b"f"), (b"c", b"f")], retried=[_retry(b"b")], kept=[_kept(b"H:1")],
                                   buried=[_failed(1)], policies={b"f": "p"})
        assert set(store.rows) == {(b"b", b"f")} and list(store.registry) == [1] and list(store.kept) == [b"H:1"]

    asyncio.run(main())


def test_writes_filed_while_refused_ones_wait_replace_them_and_are_not_overtaken():
    """Refused: a retry of k, a result, a policy, a burial. Filed meanwhile (and written before the
    refused ones are due again): the done of k, the unkeep, another policy, the unbury. The refused writes
    must not come back after them."""

    async def main() -> None:
        store = FakeStore()
        gc = _committer(store)
        await _stored(store, gc, b"k")
        store.refuse = lambda batch: "refused" if batch.retried else None
        gc.retry(_retry(b"k"))
        gc.keep(_kept(b"H:1"))
        gc.policy(b"f", "old")
        gc.bury(_failed(1))
        await _settle()
        assert store.settlements == [] and gc.failed is not None
        gc.done((b"k", b"f"))
        gc.unkeep(b"H:1")
        gc.policy(b"f", "new")
        gc.unbury(1)
        await _settle()
        assert store.settlements == [Settlement(done=[(b"k", b"f")], unkept=[b"H:1"], unburied=[1],
                                                policies={b"f": "new"})]
        assert gc.failed is None or not gc.failed  # nothing of the refused writes is left to come back
        await asyncio.sleep(3 * 0.1)
        assert len(store.settlements) == 1
        assert store.rows == {} and store.kept == {} and store.registry == {} and store.policies == {b"f": "new"}

    asyncio.run(main())


def test_a_refused_done_stays_with_its_burial():
    """A job's done and its burial are refused together; its done filed again meanwhile does not go ahead
    alone (after a crash the job would be in neither the queue nor the registry)."""

    async def main() -> None:
        store = FakeStore()
        gc = _committer(store)
        await _stored(store, gc, b"k", b"other")
        refused = [True]
        store.refuse = lambda batch: "refused" if refused[0] and batch.buried else None
        gc.bury(_failed(1), (b"k", b"f"))
        await _settle()
        gc.done((b"k", b"f"))
        gc.retry(_retry(b"k"))
        gc.done((b"other", b"f"))
        await _settle()
        assert store.settlements == [Settlement(done=[(b"other", b"f")])]
        refused[0] = False
        await _until(lambda: len(store.settlements) == 2)
        assert store.settlements[1] == Settlement(done=[(b"k", b"f")], buried=[_failed(1)])
        for batch in store.settlements:  # never a burial without its job's done, nor the done alone
            assert ((b"k", b"f") in batch.done) == bool(batch.buried)

    asyncio.run(main())


def test_an_add_drops_a_waiting_retry_of_its_key_which_is_due_again_if_the_add_fails():
    async def main() -> None:
        store = FakeStore()
        gc = _committer(store)
        await _stored(store, gc, b"k")
        gc.retry(_retry(b"k"))
        gc.add(_record(b"k"), lambda error: None)  # a new job under the key: the old retry must not follow it
        await _settle()
        assert store.settlements == [] and store.rows[(b"k", b"f")].tries == 0
        gc.retry(_retry(b"k", 3))
        store.fail = "disk full"
        gc.add(_record(b"k"), lambda error: None)
        await _settle()
        store.fail = None
        await _until(lambda: store.settlements)
        assert store.settlements == [Settlement(retried=[_retry(b"k", 3)])]
        assert store.rows[(b"k", b"f")].tries == 3

    asyncio.run(main())


def test_a_settlement_refused_for_good_holds_back_only_itself():
    async def main() -> None:
        store = FakeStore()
        gc = _committer(store)
        await _stored(store, gc, b"a", b"b")
        store.refuse = lambda batch: "value too long" if any(r.handle == b"poison" for r in batch.kept) else None
        gc.keep(_kept(b"poison"))
        await _settle()
        gc.done((b"a", b"f"))
        await _settle()
        assert (b"a", b"f") not in store.rows
        await asyncio.sleep(0.35)  # past two retries of the poison
        gc.done((b"b", b"f"))
        await _until(lambda: not store.rows)
        assert store.rows == {} and store.kept == {} and gc.failed is not None and list(gc.failed.kept) == [b"poison"]

    asyncio.run(main())


def test_refused_writes_get_one_more_try_at_shutdown(caplog: pytest.LogCaptureFixture):
    async def main() -> None:
        store = FakeStore()
        gc = _committer(store)
        await _stored(store, gc, b"a")
        refusals: list[Settlement] = []
        store.refuse = lambda batch: "refused" if not refusals and not refusals.append(batch) else None
        gc.keep(_kept(b"H:1"))
        gc.done((b"a", b"f"))
        await _settle()
        assert refusals and store.settlements == []
        await gc.drain()  # before the backoff ran out
        assert store.rows == {} and list(store.kept) == [b"H:1"]
        store.refuse = lambda batch: "refused for good"
        gc.policy(b"f", "p")
        gc.done((b"x", b"f"))
        await gc.drain()

    asyncio.run(main())
    assert "1 finished job(s) could not be deleted" in caplog.text
    assert "could not be written, and lost: 1 policy(ies)" in caplog.text


def test_sync_answers_once_the_writes_filed_before_it_are_settled_and_says_when_they_were_refused():
    async def go() -> None:
        store = FakeStore()
        group = GroupCommit(store)
        answers: list[str | None] = []
        group.policy(b"f", "tries=3")
        group.sync(answers.append)
        assert answers == []  # not before the commit
        await group.drain()
        assert answers == [None] and store.policies == {b"f": "tries=3"}
        store.refuse = lambda batch: "disk full" if batch.policies else None
        group.policy(b"g", "keep=5")
        group.sync(answers.append)
        group.sync(answers.append)
        for _ in range(20):
            await asyncio.sleep(0)
        assert answers[1:] == ["disk full", "disk full"] and b"g" not in store.policies
        store.refuse = None
        await group.drain()  # the refused write is tried again at the drain, and goes through
        assert store.policies[b"g"] == "keep=5"

    asyncio.run(go())
