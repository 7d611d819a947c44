"""settle() and replay_extras() on every durable backend: what happens to stored jobs after their add
(ended, retried with their tries, kept results, the failed-job registry, retry policies) is written in
one transaction and read back by a fresh store; and the queue table or keys stay gearmand's."""

from __future__ import annotations

import asyncio
import logging
import math
import subprocess
import time

import pytest

from geartrain.server.store.base import Extras, FailedJob, KeptResult, Retry, Settlement, StoredJob, StoreError, Try
from geartrain.server.store.url import store_from_url
from tests.conftest import free_port, need_binary, wait_port
from tests.server.store.backends import Backend, fill, small_filesystem

pytestmark = pytest.mark.timeout(120)

HISTORY = Try.encode_all([Try(1000.5, 1001.25, "host fd 7", "exception", b"ValueError: \xff bad"),
                          Try(1010.0, 1010.5, "", "worker lost", b"")])


def run(coro):
    return asyncio.run(coro)


def result(handle: bytes, data: bytes = b"42", expires: float | None = None, outcome: str = "complete") -> KeptResult:
    now = time.time()
    return KeptResult(handle=handle, function=b"f", unique=b"u-" + handle, outcome=outcome, data=data,
                      ended=now - 1.5, expires=now + 3600 if expires is None else expires, tries=2)


def failed(id_: int, function: bytes = b"f") -> FailedJob:
    return FailedJob(id=id_, handle=b"H:x:%d" % id_, function=function, unique=b"fu%d" % id_,
                     data=b"\x00payload\xff%d" % id_, size=10_000 + id_, priority=id_ % 3, background=id_ % 2 == 0,
                     failed_at=1_700_000_000.25 + id_, history=HISTORY)


async def opened(backend: Backend):
    store = backend.store()
    await store.open()
    return store


async def replayed(backend: Backend) -> tuple[dict[bytes, StoredJob], Extras]:
    """What a fresh store (a restarted server) replays: jobs by unique, and the extras."""
    store = await opened(backend)
    try:
        return {j.unique: j for j in await store.replay()}, await store.replay_extras()
    finally:
        await store.close()


def test_settle_round_trip_of_every_list(backend: Backend):
    async def go():
        store = await opened(backend)
        try:
            a, b = StoredJob(b"f", b"a", b"A", 1), StoredJob(b"f", b"", b"no unique", 2)
            c = StoredJob(b"g", b"c", b"C", 0)
            await store.add([a, b, c])
            when = time.time() + 10.25
            batch = Settlement(done=[a.key], retried=[Retry(b.key, when, 2, HISTORY)],
                               kept=[result(b"H:x:1"), result(b"H:x:2", data=b"\x00\xff" * 1000, outcome="exception")],
                               buried=[failed(7), failed(3, b"other-fn")],
                               policies={b"f": '{"tries": 3}', b"g": "x"})
            await store.settle(batch)
            await store.settle(batch)  # idempotent: a settlement written again (after an error) changes nothing
        finally:
            await store.close()

        jobs, extras = await replayed(backend)
        assert set(jobs) == {b"", b"c"}
        assert (jobs[b""].data, jobs[b""].tries, jobs[b""].history, jobs[b""].when) == (
            b"no unique", 2, HISTORY, math.ceil(when))
        assert (jobs[b"c"].tries, jobs[b"c"].history, jobs[b"c"].when) == (0, b"", 0)
        assert sorted(extras.kept, key=lambda r: r.handle) == batch.kept
        assert extras.failed == [failed(3, b"other-fn"), failed(7)]  # by id
        assert Try.decode_all(extras.failed[0].history)[0].text == b"ValueError: \xff bad"
        assert extras.policies == {b"f": '{"tries": 3}', b"g": "x"}

        store = await opened(backend)
        try:
            await store.settle(Settlement(kept=[result(b"H:x:2", data=b"again")], unkept=[b"H:x:1"], unburied=[3],
                                          policies={b"g": "", b"h": "y"}, done=[jobs[b""].key]))
        finally:
            await store.close()
        jobs, extras = await replayed(backend)
        assert set(jobs) == {b"c"}
        assert [(r.handle, r.data) for r in extras.kept] == [(b"H:x:2", b"again")]
        assert [f.id for f in extras.failed] == [7]
        assert extras.policies == {b"f": '{"tries": 3}', b"h": "y"}

    run(go())


def test_tries_and_history_go_through_add_and_replay(backend: Backend):
    async def go():
        store = await opened(backend)
        try:
            many = [StoredJob(b"f", b"m%d" % i, b"d", 1, tries=i % 3, history=HISTORY if i % 3 else b"")
                    for i in range(100)]  # big enough for the bulk paths
            await store.add([StoredJob(b"f", b"k", b"first", 1, tries=3, history=HISTORY, when=2_000_000_000),
                             StoredJob(b"f", b"", b"empty", 1, tries=1, history=HISTORY)] + many)
        finally:
            await store.close()
        jobs, _ = await replayed(backend)
        assert (jobs[b"k"].tries, jobs[b"k"].history, jobs[b"k"].when) == (3, HISTORY, 2_000_000_000)
        assert (jobs[b""].tries, jobs[b""].history) == (1, HISTORY)
        assert [(jobs[j.unique].tries, jobs[j.unique].history) for j in many] == [(j.tries, j.history) for j in many]

        store = await opened(backend)
        try:  # a job added again under its key replaces the old row whole: no tries left over
            await store.add([StoredJob(b"f", b"k", b"second", 1)])
            await store.add([StoredJob(b"f", b"m1", b"again", 1)] + [StoredJob(b"f", b"n%d" % i, b"", 1)
                                                                     for i in range(100)])
        finally:
            await store.close()
        jobs, _ = await replayed(backend)
        assert (jobs[b"k"].data, jobs[b"k"].tries, jobs[b"k"].history, jobs[b"k"].when) == (b"second", 0, b"", 0)
        assert (jobs[b"m1"].data, jobs[b"m1"].tries, jobs[b"m1"].history) == (b"again", 0, b"")

    run(go())


def test_a_retry_replaces_the_run_at_time_and_of_a_job_gone_changes_nothing(backend: Backend):
    async def go():
        store = await opened(backend)
        try:
            late = StoredJob(b"f", b"late", b"", 1, when=5_000_000_000, reducer=b"r")  # past 2038: an extra record
            await store.add([late, StoredJob(b"f", b"gone", b"", 1)])
            await store.settle(Settlement(done=[(b"gone", b"f")]))
            await store.settle(Settlement(retried=[Retry(late.key, 1_800_000_000.2, 1, HISTORY),
                                                   Retry((b"gone", b"f"), 1_800_000_000, 1, HISTORY)]))
        finally:
            await store.close()
        jobs, _ = await replayed(backend)
        assert set(jobs) == {b"late"}
        assert (jobs[b"late"].when, jobs[b"late"].reducer, jobs[b"late"].tries) == (1_800_000_001, b"r", 1)

        store = await opened(backend)
        try:  # and one past gearmand's 32-bit column
            await store.settle(Settlement(retried=[Retry(late.key, 6_000_000_000, 2, HISTORY)]))
        finally:
            await store.close()
        jobs, _ = await replayed(backend)
        assert (jobs[b"late"].when, jobs[b"late"].tries) == (6_000_000_000, 2)

    run(go())


def test_expired_results_are_not_replayed_and_are_deleted(backend: Backend):
    async def go():
        store = await opened(backend)
        try:
            await store.settle(Settlement(kept=[result(b"old", expires=time.time() - 1), result(b"new")]))
            assert [r.handle for r in (await store.replay_extras()).kept] == [b"new"]
        finally:
            await store.close()
        if backend.kind == "redis":
            left = await backend.redis("HKEYS", f"geartrain-results:{backend.prefix}")
        else:
            left = [row[0] for row in await backend.sql(f"SELECT handle FROM {backend.name}_results")]
        assert [bytes(h) for h in left] == [b"new"]

    run(go())


async def _poison(backend: Backend) -> Settlement | None:
    """Something the database refuses in the middle of a settlement: for SQL a failed job without a function
    (NOT NULL); for Redis the registry's hash turned into a string. Returns the bad part for SQL."""
    if backend.kind == "redis":
        await backend.redis("SET", f"geartrain-failed:{backend.prefix}", "not a hash")
        return None
    bad = failed(9)
    bad.function = None  # type: ignore[assignment]
    return Settlement(buried=[bad])


def test_a_settle_that_fails_midway_writes_nothing(backend: Backend):
    async def go():
        store = await opened(backend)
        try:
            a, b = StoredJob(b"f", b"a", b"", 1), StoredJob(b"f", b"b", b"", 1)
            await store.add([a, b])
            bad = await _poison(backend)
            batch = Settlement(done=[a.key], retried=[Retry(b.key, 1_900_000_000, 1, HISTORY)],
                               kept=[result(b"h1")], buried=[failed(1)] + (bad.buried if bad else []),
                               policies={b"f": "p", b"g": ""})
            with pytest.raises(StoreError):
                await store.settle(batch)
            jobs, extras = await replayed(backend) if backend.kind != "redis" else (
                {j.unique: j for j in await store.replay()}, Extras())
            assert set(jobs) == {b"a", b"b"} and jobs[b"b"].tries == 0  # nothing deleted, nothing updated
            if backend.kind == "redis":
                assert not await backend.redis("EXISTS", f"geartrain-results:{backend.prefix}")
                assert not await backend.redis("EXISTS", f"geartrain-policies:{backend.prefix}")
                await backend.redis("DEL", f"geartrain-failed:{backend.prefix}")
            else:
                assert extras == Extras()
            batch.buried = [failed(1)]
            await store.settle(batch)  # once the database takes it, all of it
        finally:
            await store.close()
        jobs, extras = await replayed(backend)
        assert set(jobs) == {b"b"} and jobs[b"b"].tries == 1
        assert [r.handle for r in extras.kept] == [b"h1"] and [f.id for f in extras.failed] == [1]
        assert extras.policies == {b"f": "p"}

    run(go())


def test_redis_extras_are_not_keys_gearmand_replays(tmp_path):
    """gearmand's Redis replay scans ``<prefix>*`` and geartrain's ``<prefix>-*``: neither sees the hashes
    beside the jobs."""
    from tests.server.store.backends import fresh_backend

    gen = fresh_backend("redis", tmp_path)
    backend = next(gen)

    async def go():
        store = await opened(backend)
        try:
            job = StoredJob(b"f-n", b"", b"", 1, tries=1, history=HISTORY, reducer=b"r")
            await store.add([job])
            await store.settle(Settlement(retried=[Retry(job.key, 1_900_000_000, 2, HISTORY)], kept=[result(b"h")],
                                          buried=[failed(1)], policies={b"f": "p"}))
            side = [k.encode() for k in backend.side_keys]
            assert await backend.redis("EXISTS", *side) == len(side)
            assert not any(k.startswith(backend.prefix.encode()) for k in side)
            assert await backend.redis_keys() == [store.job_key(b"f-n", job.store_key)]
            (got,) = await store.replay()
            assert (got.unique, got.tries, got.when) == (b"", 2, 1_900_000_000)
        finally:
            await store.close()

    try:
        run(go())
    finally:
        next(gen, None)


def _create_old_table(backend: Backend, gearmands: bool) -> list[str]:
    """The DDL of a queue table made by gearmand (GEARMANDS) or by geartrain before retries."""
    t = backend.name
    extra = {"sqlite": "geartrain_extra BLOB, ", "postgres": "geartrain_extra BYTEA, ",
             "mysql": "geartrain_extra LONGBLOB, "}[backend.kind] if not gearmands else ""
    if backend.kind == "sqlite":
        return [f"CREATE TABLE {t} ( unique_key TEXT, function_name TEXT, priority INTEGER, data BLOB, "
                f"when_to_run INTEGER, {extra}PRIMARY KEY (unique_key, function_name))"]
    if backend.kind == "postgres":
        return [f"CREATE TABLE {t} (unique_key VARCHAR(64), function_name VARCHAR(255), priority INTEGER, "
                f"data BYTEA, when_to_run INTEGER, {extra}UNIQUE (unique_key, function_name))"]
    if gearmands:
        return [f"CREATE TABLE {t}(unique_key VARCHAR(64),function_name VARCHAR(255),priority INT,"
                "data LONGBLOB,when_to_run INT,unique key (unique_key, function_name))"]
    return [f"CREATE TABLE {t} (unique_key VARBINARY(64) NOT NULL, function_name VARBINARY(255) NOT NULL, "
            f"priority INT, data LONGBLOB, when_to_run INT, {extra}PRIMARY KEY (unique_key, function_name)) "
            "ENGINE=InnoDB"]


@pytest.mark.parametrize("made_by", ["gearmand", "older geartrain"])
def test_an_existing_table_gets_what_it_lacks(table_backend: Backend, made_by: str):
    """A queue table made by gearmand, or by geartrain before retries, with a job in it: the store opens
    it, adds its columns and the tables beside it, replays the job and settles its retry."""
    backend = table_backend
    t = backend.name

    async def go():
        for ddl in _create_old_table(backend, made_by == "gearmand"):
            await backend.sql(ddl)
        mark = {"sqlite": "?", "postgres": "$1", "mysql": "%s"}[backend.kind]
        await backend.sql(f"INSERT INTO {t} (unique_key, function_name, priority, data, when_to_run) "
                          f"VALUES ('old', 'f', 1, {mark}, 0)", b"payload")
        store = await opened(backend)
        try:
            (job,) = await store.replay()
            assert (job.unique, job.data, job.tries) == (b"old", b"payload", 0)
            await store.settle(Settlement(retried=[Retry(job.key, 1_900_000_000, 1, HISTORY)], kept=[result(b"h")],
                                          buried=[failed(1)], policies={b"f": "p"}))
        finally:
            await store.close()
        jobs, extras = await replayed(backend)  # a second open finds everything in place
        assert (jobs[b"old"].tries, jobs[b"old"].history, jobs[b"old"].when) == (1, HISTORY, 1_900_000_000)
        assert ([r.handle for r in extras.kept], [f.id for f in extras.failed], extras.policies) == (
            [b"h"], [1], {b"f": "p"})
        # gearmand's own statements still work on the table
        rows = await backend.sql(f"SELECT unique_key, function_name, priority, data, when_to_run FROM {t}")
        assert [(bytes(r[0]) if not isinstance(r[0], str) else r[0].encode(), r[4]) for r in rows] == [
            (b"old", 1_900_000_000)]

    run(go())


def _store_lines(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(1 for r in caplog.records if r.name == "geartrain.store" and text in r.getMessage())


def test_redis_at_maxmemory_settles_deletes_and_refuses_writes(tmp_path, caplog: pytest.LogCaptureFixture):
    """At maxmemory a settlement's writes are refused before anything is written; its deletes go alone, unless
    it buries a job (a buried job's row and its registry entry go together)."""
    import redis.asyncio as aioredis

    caplog.set_level(logging.INFO, logger="geartrain.store")
    port = free_port()
    proc = subprocess.Popen([need_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        wait_port(port, proc)

        async def go():
            store = store_from_url(f"redis://127.0.0.1:{port}/0")
            client = aioredis.Redis(host="127.0.0.1", port=port)
            await store.open()
            try:
                keep, bury = StoredJob(b"f", b"keep", b"", 1), StoredJob(b"f", b"bury", b"", 1)
                await store.add([keep, bury])
                await store.settle(Settlement(kept=[result(b"before")]))
                used = int((await client.info("memory"))["used_memory"])
                await client.config_set("maxmemory-policy", "noeviction")
                await client.config_set("maxmemory", used // 2)  # past it: every write that needs room is refused
                with pytest.raises(StoreError, match="no room"):
                    await store.add([StoredJob(b"f", b"refused", b"", 1)])
                with pytest.raises(StoreError, match="no room"):
                    await store.settle(Settlement(done=[bury.key], buried=[failed(1)]))
                assert await client.exists(store.job_key(b"f", b"bury"))  # with its burial: not deleted
                assert not await client.exists(store.failed_key)
                with pytest.raises(StoreError, match="no room"):
                    await store.settle(Settlement(done=[keep.key], kept=[result(b"k", data=bytes(1 << 20))],
                                                  unkept=[b"before"]))
                assert not await client.exists(store.job_key(b"f", b"keep"))  # the deletes went alone
                assert not await client.exists(store.results_key)
                await client.config_set("maxmemory", 0)
                await store.settle(Settlement(done=[bury.key], buried=[failed(1)]))
                assert not await client.exists(store.job_key(b"f", b"bury"))
                assert [f.id for f in (await store.replay_extras()).failed] == [1]
            finally:
                await store.close()
                await client.aclose()

        run(go())
    finally:
        proc.terminate()
        proc.wait(10)


def test_sqlite_on_a_full_disk_settles_deletes_and_refuses_writes(tmp_path, caplog: pytest.LogCaptureFixture):
    """The same on a full disk with SQLite: the writes are refused, the deletes (but not a buried job's) are
    made in the reserve's room."""
    caplog.set_level(logging.INFO, logger="geartrain.store")
    with small_filesystem(tmp_path) as where:

        async def go():
            store = store_from_url(f"sqlite:///{where}/q.sqlite")
            await store.open()
            try:
                jobs = [StoredJob(b"f", b"u%d" % i, bytes(1000), 1) for i in range(200)]
                await store.add(jobs)
                await store.settle(Settlement(kept=[result(b"before"), result(b"soon", expires=time.time() + 0.5)]))
                filler = fill(where)
                await asyncio.sleep(0.6)
                assert [r.handle for r in (await store.replay_extras()).kept] == [b"before"]  # read on a full disk
                with pytest.raises(StoreError, match="no room"):
                    await store.settle(Settlement(done=[jobs[0].key], buried=[failed(1)]))
                with pytest.raises(StoreError, match="no room"):
                    await store.settle(Settlement(done=[j.key for j in jobs[1:]], kept=[result(b"k")],
                                                  unkept=[b"before"]))
                got = await store.replay()
                assert [j.unique for j in got] == [b"u0"]  # the buried job's row stays with its burial
                assert (await store.replay_extras()).kept == []
                filler.unlink()
                await store.settle(Settlement(done=[jobs[0].key], buried=[failed(1)]))
                assert await store.replay() == []
                assert [f.id for f in (await store.replay_extras()).failed] == [1]
            finally:
                await store.close()

        run(go())
    assert _store_lines(caplog, "no room") == 1, caplog.text


def test_memory_store_settles_nothing():
    from geartrain.server.store.base import MemoryStore

    async def go():
        store = MemoryStore()
        await store.settle(Settlement(kept=[result(b"h")]))
        assert await store.replay_extras() == Extras()

    run(go())


def test_settlement_is_empty_only_without_writes():
    assert not Settlement()
    assert Settlement(policies={b"f": ""}) and Settlement(unburied=[1]) and Settlement(done=[(b"u", b"f")])
