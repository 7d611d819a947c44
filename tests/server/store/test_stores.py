"""Every durable backend through the Store interface: add / settle (done) / replay, batches, gearmand's
layout, and recovery after its connection is killed or the network to it is cut."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from pathlib import Path

import pytest

from geartrain.server.store.base import Settlement, StoredJob, StoreError
from geartrain.server.store.url import store_from_url
from tests.conftest import free_port, need_binary, wait_port
from tests.server.store.backends import (
    COMMIT_MARK,
    PORTS,
    Backend,
    Proxy,
    fill,
    fresh_backend,
    small_filesystem,
)

pytestmark = pytest.mark.timeout(120)


def run(coro):
    return asyncio.run(coro)


def jobs(n: int, function: bytes = b"f", tag: bytes = b"u") -> list[StoredJob]:
    return [StoredJob(function, b"%s%d" % (tag, i), b"%064d" % i, i % 3) for i in range(n)]


def by_identity(stored: list[StoredJob]) -> dict[tuple, StoredJob]:
    return {(j.function, j.unique, j.data): j for j in stored}


def test_add_replay_done_round_trip(backend: Backend):
    special = [
        StoredJob(b"f", b"", b"empty unique one", 1),
        StoredJob(b"f", b"", b"empty unique two", 2),
        StoredJob(b"f", b"-", b"dash unique", 1),
        StoredJob(b"with-dash", b"u-1", b"\x00binary\xff", 0),
        StoredJob(b"f", b"\xffnot utf8", b"", 2),
        StoredJob(b"epoch", b"e1", b"later", 1, when=2_000_000_000),
        StoredJob(b"epoch", b"e2", b"after 2038", 1, when=5_000_000_000),
        StoredJob(b"reduce", b"r1", b"map me", 1, reducer=b"reducer-fn"),
        StoredJob(b"sched", b"s1", b"cron", 0, schedule=b"*/5 * * * *"),
    ]

    async def go():
        store = backend.store()
        await store.open()
        try:
            await store.add(special + jobs(20))
            got = await store.replay()
            assert len(got) == len(special) + 20
            index = by_identity(got)
            for want in special + jobs(20):
                job = index[(want.function, want.unique, want.data)]
                assert (job.priority, job.when, job.reducer, job.schedule) == (
                    want.priority, want.when, want.reducer, want.schedule)
            # the two empty-unique jobs of one function are two jobs, each with its own key
            empties = [j for j in got if j.unique == b""]
            assert len(empties) == 2 and len({j.key for j in empties}) == 2
            # done of one of them removes exactly that one
            await store.settle(Settlement(done=[empties[0].key]))
            left = by_identity(await store.replay())
            assert (b"f", b"", empties[0].data) not in left and (b"f", b"", empties[1].data) in left
            await store.settle(Settlement(done=[j.key for j in got]))
            assert await store.replay() == []
            assert await backend.count() == 0
        finally:
            await store.close()

    run(go())


def test_big_batches_keep_unusual_jobs_and_the_last_add_of_a_key(backend: Backend):
    """Batches big enough for each backend's bulk path (PostgreSQL's binary COPY, MariaDB's bulk
    execute), plain ones and ones mixing in every kind of job the plain fast path does not take."""
    unusual = [
        StoredJob(b"f", b"", b"empty unique", 1),
        StoredJob(b"f", b"-", b"dash unique", 2),
        StoredJob(b"f", b"\xc3\xbcnicode", b"utf-8 unique", 0),
        StoredJob(b"f", b"\xffnot utf8", b"binary unique", 1),
        StoredJob(b"other", b"u3", b"same unique, other function", 1),
        StoredJob(b"epoch", b"e1", b"later", 1, when=2_000_000_000),
        StoredJob(b"reduce", b"r1", b"map me", 1, reducer=b"reducer-fn"),
        StoredJob(b"big", b"b1", bytes(range(256)) * 300, 2),
    ]

    async def go():
        store = backend.store()
        await store.open()
        try:
            plain = jobs(300, tag=b"p")
            await store.add(plain)
            mixed = jobs(150) + unusual + [StoredJob(b"f", b"u7", b"the last add of u7", 0)]
            await store.add(mixed)
            got = await store.replay()
            assert len(got) == 300 + 150 + len(unusual)
            index = {(j.function, j.unique): j for j in got}
            for want in plain + jobs(150) + unusual:
                if want.unique == b"u7":
                    continue
                job = index[(want.function, want.unique)] if want.unique else next(
                    j for j in got if j.unique == b"" and j.data == want.data)
                assert (job.data, job.priority, job.when, job.reducer) == (
                    want.data, want.priority, want.when, want.reducer)
            assert (index[(b"f", b"u7")].data, index[(b"f", b"u7")].priority) == (b"the last add of u7", 0)
            await store.settle(Settlement(done=[j.key for j in got]))
            assert await backend.count() == 0
        finally:
            await store.close()

    run(go())


def test_mysql_without_bulk_execute_uses_the_text_protocol(tmp_path):
    """MySQL servers (and older asyncmy) have no bulk execute: big batches go as multi-row INSERTs."""
    gen = fresh_backend("mysql", tmp_path)
    backend = next(gen)

    async def go():
        store = backend.store()
        await store.open()
        try:
            store._bulk = None  # (with MariaDB and a recent asyncmy the other tests take the bulk path)
            await store.add(jobs(300))  # a plain batch
            await store.add(jobs(300, tag=b"m") + [StoredJob(b"f", b"", b"empty unique", 1)])  # and a mixed one
            got = await store.replay()
            assert len(got) == 601 and {j.data for j in got} >= {b"%064d" % i for i in range(300)}
            assert {j.unique for j in got} >= {b"u%d" % i for i in range(300)} | {b"m%d" % i for i in range(300)}
        finally:
            await store.close()

    try:
        run(go())
    finally:
        next(gen, None)


def test_state_survives_a_new_store(backend: Backend):
    """What one store object added, a fresh one (a restarted server) replays, keys included."""
    async def go():
        first = backend.store()
        await first.open()
        batch = jobs(50) + [StoredJob(b"g", b"", b"no unique", 1)]
        await first.add(batch)
        await first.settle(Settlement(done=[batch[0].key, batch[-1].key]))
        await first.close()
        second = backend.store()
        await second.open()
        try:
            got = await second.replay()
            assert sorted(j.unique for j in got) == sorted(j.unique for j in batch[1:-1])
            await second.settle(Settlement(done=[j.key for j in got]))
            assert await backend.count() == 0
        finally:
            await second.close()

    run(go())


def test_batch_of_a_thousand_is_stored_and_streams_back_in_batches(backend: Backend):
    async def go():
        store = backend.store()
        await store.open()
        try:
            await store.add(jobs(1000))
            assert await backend.count() == 1000
            sizes = []
            seen = set()
            async for batch in store.replay_batches(size=300):
                sizes.append(len(batch))
                seen |= {j.unique for j in batch}
            assert max(sizes) <= 300 and sum(sizes) == 1000 and len(seen) == 1000
        finally:
            await store.close()

    run(go())


def test_add_of_an_existing_key_replaces_it(backend: Backend):
    """gearmand's sqlite queue does INSERT OR REPLACE; every backend upserts (an add retried
    after a lost connection must not fail on its own first attempt)."""
    async def go():
        store = backend.store()
        await store.open()
        try:
            await store.add([StoredJob(b"f", b"same", b"old", 2)])
            await store.add([StoredJob(b"f", b"same", b"new", 0), StoredJob(b"f", b"other", b"x", 1)])
            got = {j.unique: j for j in await store.replay()}
            assert set(got) == {b"same", b"other"}
            assert (got[b"same"].data, got[b"same"].priority) == (b"new", 0)
            # the same in a big batch (PostgreSQL takes those with COPY, which refuses existing keys)
            await store.add(jobs(200, tag=b"big") + [StoredJob(b"f", b"same", b"newer", 2)])
            got = {j.unique: j for j in await store.replay()}
            assert len(got) == 202 and (got[b"same"].data, got[b"same"].priority) == (b"newer", 2)
        finally:
            await store.close()

    run(go())


def test_gearmand_layout(backend: Backend):
    """Columns / keys are gearmand's, and a row written the way gearmand writes it replays."""
    async def go():
        store = backend.store()
        await store.open()
        try:
            await store.add([StoredJob(b"func", b"uniq", b"payload", 2, when=1234)])
            t = backend.name
            if backend.kind == "sqlite":
                rows = await backend.sql(f"SELECT unique_key, function_name, priority, data, when_to_run, "
                                         f"typeof(unique_key), typeof(function_name), typeof(data) FROM {t}")
                assert rows == [(b"uniq", b"func", 2, b"payload", 1234, b"text", b"text", b"blob")]
                await backend.sql(f"INSERT INTO {t} (unique_key, function_name, priority, data, when_to_run) "
                                  "VALUES ('g1', 'gfunc', 0, x'00ff', 0)")
            elif backend.kind == "postgres":
                rows = await backend.sql(f"SELECT unique_key, function_name, priority, data, when_to_run FROM {t}")
                assert rows == [("uniq", "func", 2, b"payload", 1234)]
                types = dict(await backend.sql("SELECT column_name, data_type FROM information_schema.columns "
                                               "WHERE table_name = $1", t))
                assert types["unique_key"] == "character varying" and types["data"] == "bytea"
                await backend.sql(f"INSERT INTO {t} (priority, unique_key, function_name, data, when_to_run) "
                                  "VALUES (0, 'g1', 'gfunc', '\\x00ff'::bytea, 0)")
            elif backend.kind == "mysql":
                rows = await backend.sql(f"SELECT unique_key, function_name, priority, data, when_to_run FROM {t}")
                assert rows == [(b"uniq", b"func", 2, b"payload", 1234)]
                # the key is the primary key (one B-tree per insert); gearmand's statements work on it
                key = await backend.sql("SELECT column_name FROM information_schema.key_column_usage WHERE "
                                        "table_schema = DATABASE() AND table_name = %s AND constraint_name = "
                                        "'PRIMARY' ORDER BY ordinal_position", t)
                assert [bytes(row[0]) if not isinstance(row[0], str) else row[0].encode() for row in key] == [
                    b"unique_key", b"function_name"]
                await backend.sql(f"INSERT INTO {t} (unique_key, function_name, priority, data, when_to_run) "
                                  "VALUES ('g1', 'gfunc', 0, x'00ff', 0) ON DUPLICATE KEY UPDATE data = x'00ff'")
            else:
                key = f"{backend.prefix}-func-uniq".encode()
                assert await backend.redis_keys() == [key]
                assert await backend.redis("HGETALL", key) == {b"data": b"payload", b"priority": b"2"}
                await backend.redis("HSET", f"{backend.prefix}-gfunc-g1", "data", b"\x00\xff", "priority", "0")
                # gearmand >= 1.1.22 also writes function and unique fields (exact where the key is not)
                await backend.redis("HSET", f"{backend.prefix}-a-b-c", "data", "d", "priority", "2",
                                    "function", "a-b", "unique", "c")
                # gearmand <= 1.1.15 kept just the workload, as a string
                await backend.redis("SET", f"{backend.prefix}-sfunc-s1", "old")
            got = {j.unique: j for j in await store.replay()}
            if backend.kind == "redis":
                assert (got[b"c"].function, got[b"c"].data, got[b"c"].priority) == (b"a-b", b"d", 2)
                assert (got[b"s1"].function, got[b"s1"].data, got[b"s1"].priority) == (b"sfunc", b"old", 1)
                await store.settle(Settlement(done=[got[b"c"].key, got[b"s1"].key]))
                assert sorted(await backend.redis_keys()) == sorted(
                    [f"{backend.prefix}-gfunc-g1".encode(), f"{backend.prefix}-func-uniq".encode()])
            assert (got[b"g1"].function, got[b"g1"].data, got[b"g1"].priority) == (b"gfunc", b"\x00\xff", 0)
            assert got[b"uniq"].when == 1234
        finally:
            await store.close()

    run(go())


def test_gearmand_made_table_gets_the_extra_column(table_backend: Backend):
    """A table created by gearmand (its exact DDL) is used as is, plus two nullable columns."""
    backend = table_backend
    t = backend.name

    async def go():
        if backend.kind == "sqlite":
            await backend.sql(f"CREATE TABLE {t} ( unique_key TEXT, function_name TEXT, priority INTEGER, data BLOB, "
                              "when_to_run INTEGER, PRIMARY KEY (unique_key, function_name))")
        elif backend.kind == "postgres":
            await backend.sql(f"CREATE TABLE IF NOT EXISTS {t} (unique_key VARCHAR(64), function_name VARCHAR(255), "
                              "priority INTEGER, data BYTEA, when_to_run INTEGER, UNIQUE (unique_key, function_name))")
        else:
            await backend.sql(f"CREATE TABLE {t}(unique_key VARCHAR(64),function_name VARCHAR(255),priority INT,"
                              "data LONGBLOB,when_to_run INT,unique key (unique_key, function_name))")
        store = backend.store()
        await store.open()
        try:
            await store.add([StoredJob(b"f", b"", b"empty", 1), StoredJob(b"f", b"\xfe\xff", b"binary unique", 1),
                             StoredJob(b"f", b"plain", b"p", 1)])
            got = await store.replay()
            assert sorted(j.unique for j in got) == [b"", b"plain", b"\xfe\xff"]
            await store.settle(Settlement(done=[j.key for j in got]))
            assert await backend.count() == 0
        finally:
            await store.close()

    run(go())


def test_killed_connection_is_replaced(networked_backend: Backend, caplog: pytest.LogCaptureFixture):
    """The database ends our connection (pg_terminate_backend / KILL / CLIENT KILL): the next call
    reconnects by itself, retries once, and nothing is lost."""
    backend = networked_backend
    caplog.set_level(logging.WARNING, logger="geartrain.store")

    async def go():
        store = backend.store()
        await store.open()
        try:
            await store.add(jobs(10, tag=b"a"))
            for round_ in range(3):
                await backend.kill_connection(store)
                await asyncio.sleep(0.2)
                await store.add(jobs(10, tag=b"r%d-" % round_))
            await backend.kill_connection(store)
            await asyncio.sleep(0.2)
            await store.settle(Settlement(done=[(b"a0", b"f")]))
            got = {j.unique for j in await store.replay()}
            assert len(got) == 39 and b"a0" not in got and b"r2-9" in got
        finally:
            await store.close()

    run(go())
    assert "connection to" in caplog.text and "lost" in caplog.text


def test_network_cut_gives_store_error_then_recovers(networked_backend: Backend,
                                                     caplog: pytest.LogCaptureFixture):
    """Nothing reachable: calls raise StoreError promptly (the server answers QUEUE_ERROR), and once
    the network is back the store reconnects on its own; what was acknowledged is all there."""
    backend = networked_backend
    caplog.set_level(logging.INFO, logger="geartrain.store")

    async def go():
        proxy = await Proxy(PORTS[backend.kind]).start()
        backend.port = proxy.port
        store = backend.store()
        store.connect_timeout = 1.0  # type: ignore[attr-defined]
        acknowledged: set[bytes] = set()
        try:
            await store.open()
            await store.add(jobs(5, tag=b"before"))
            acknowledged |= {b"before%d" % i for i in range(5)}
            await proxy.cut()
            failures = 0
            for i in range(3):  # each fails (within the connect timeout; pytest-timeout bounds the test)
                with pytest.raises(StoreError):
                    await store.add([StoredJob(b"f", b"during%d" % i, b"x", 1)])
                failures += 1
            await proxy.restore()
            deadline = asyncio.get_running_loop().time() + 15
            while True:
                try:
                    await store.add(jobs(5, tag=b"after"))
                    break
                except StoreError:
                    assert asyncio.get_running_loop().time() < deadline, "store never reconnected"
                    await asyncio.sleep(0.2)
            acknowledged |= {b"after%d" % i for i in range(5)}
            stored = {j.unique for j in await store.replay()}
            assert acknowledged <= stored and failures == 3
        finally:
            await store.close()
            await proxy.cut()

    run(go())
    assert "reconnected" in caplog.text


def test_unreachable_server_fails_fast_at_open(tmp_path):
    """A database that is not there: open() raises StoreError within the connect timeout."""
    from tests.conftest import free_port

    port = free_port()
    for url in (f"postgresql://postgres@127.0.0.1:{port}/test", f"mysql://root@127.0.0.1:{port}/test",
                f"redis://127.0.0.1:{port}/0"):
        from geartrain.server.store.url import store_from_url

        store = store_from_url(url)
        store.connect_timeout = 1.0  # type: ignore[attr-defined]

        async def go(store=store):
            with pytest.raises(StoreError):
                await store.open()
            with pytest.raises(StoreError):  # inside the backoff: refused at once
                await store.add([StoredJob(b"f", b"u", b"", 1)])
            await store.close()

        run(go())


def test_replaced_job_does_not_keep_an_old_extra_record(backend: Backend):
    async def go():
        store = backend.store()
        await store.open()
        try:
            await store.add([StoredJob(b"f", b"k", b"first", 1, when=1234, reducer=b"r")])
            await store.add([StoredJob(b"f", b"k", b"second", 1)])
            (job,) = await store.replay()
            assert (job.data, job.when, job.reducer) == (b"second", 0, b"")
        finally:
            await store.close()

    run(go())


async def until(check, what: str, seconds: float = 10.0) -> None:
    """Wait (polling) until the coroutine function CHECK returns true; fail after SECONDS."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.02)


def test_an_add_whose_reply_was_lost_is_deleted_before_anything_else(networked_backend: Backend,
                                                                     caplog: pytest.LogCaptureFixture):
    """The network breaks after the database committed an add and before its reply came back, and
    the one retry cannot connect: add() raises StoreError (the submitters get QUEUE_ERROR, "the job
    is not created"), yet the row is in the database. The next connection deletes it before it
    writes anything else, so it never runs; the adds that succeeded stay."""
    backend = networked_backend
    caplog.set_level(logging.WARNING, logger="geartrain.store")

    async def go():
        proxy = await Proxy(PORTS[backend.kind]).start()
        backend.port = proxy.port
        store = backend.store()
        store.connect_timeout = 1.0  # type: ignore[attr-defined]
        try:
            await store.open()
            await store.add(jobs(3, tag=b"kept"))
            for round_ in range(3):
                lost = b"lost%d" % round_
                proxy.hold_replies_after(COMMIT_MARK[backend.kind])
                add = asyncio.ensure_future(store.add([StoredJob(b"f", lost, b"x", 1)]))
                await asyncio.wait_for(proxy.held.wait(), 10)
                await until(lambda lost=lost: backend.has_job(b"f", lost), "the add never reached the database")
                await proxy.cut()
                with pytest.raises(StoreError):
                    await asyncio.wait_for(add, 20)
                assert await backend.has_job(b"f", lost)  # stored, although the add failed
                await proxy.restore()
                after = b"after%d" % round_
                deadline = asyncio.get_running_loop().time() + 15
                while True:  # the first call on the new connection deletes the lost job, then adds
                    try:
                        await store.add([StoredJob(b"f", after, b"y", 1)])
                        break
                    except StoreError:
                        assert asyncio.get_running_loop().time() < deadline, "the store never reconnected"
                        await asyncio.sleep(0.1)
                assert not await backend.has_job(b"f", lost)
            stored = {j.unique for j in await store.replay()}
            assert stored == {b"kept0", b"kept1", b"kept2", b"after0", b"after1", b"after2"}
        finally:
            await store.close()
            await proxy.cut()

    run(go())
    assert caplog.text.count("answered QUEUE_ERROR") == 3


def _store_lines(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records if r.name == "geartrain.store")


def test_sqlite_on_a_full_disk_still_deletes_finished_jobs(tmp_path, caplog: pytest.LogCaptureFixture):
    """A real full filesystem: adds are refused (QUEUE_ERROR) but the deletes of finished jobs go
    through in the room of the reserve, so those jobs do not run again after a restart. The log
    says so once, with no talk of lost connections; once there is room, adds work again."""
    caplog.set_level(logging.INFO, logger="geartrain.store")
    with small_filesystem(tmp_path) as fs:
        backend = Backend("sqlite", fs)

        async def go():
            store = backend.store()
            await store.open()
            try:
                batch = jobs(2000)
                for i in range(0, len(batch), 500):
                    await store.add(batch[i:i + 500])
                filler = fill(fs)
                with pytest.raises(StoreError, match="no room"):  # more than the WAL holds
                    await store.add([StoredJob(b"f", b"big%d" % i, bytes(100_000), 1) for i in range(40)])
                for i in range(0, len(batch), 500):
                    await store.settle(Settlement(done=[j.key for j in batch[i:i + 500]]))
                assert await backend.count() == 0
                assert not Path(store.reserve_path).exists()  # given back for the deletes
                with pytest.raises(StoreError, match="no room"):  # refused while the reserve is not back
                    await store.add(jobs(1, tag=b"refused"))
                filler.unlink()
                deadline = asyncio.get_running_loop().time() + 10
                while True:  # the reserve is taken back (tried at most once a second), then adds work
                    try:
                        await store.add(jobs(1, tag=b"back"))
                        break
                    except StoreError:
                        assert asyncio.get_running_loop().time() < deadline, "adds never worked again"
                        await asyncio.sleep(0.1)
                assert Path(store.reserve_path).exists()
                assert {j.unique for j in await store.replay()} == {b"back0"}
            finally:
                await store.close()

        run(go())
    assert _store_lines(caplog, "no room") == 1 and _store_lines(caplog, "has room again") == 1, caplog.text
    assert "lost" not in caplog.text and "reconnect" not in caplog.text


def test_redis_at_maxmemory_refuses_adds_and_still_deletes(tmp_path, caplog: pytest.LogCaptureFixture):
    """The same path on Redis, on a Redis of our own with a small maxmemory: adds get "no room"
    (logged once), deletes are allowed at maxmemory and go through, and then adds work again."""
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
                used = int((await client.info("memory"))["used_memory"])
                await client.config_set("maxmemory-policy", "noeviction")
                await client.config_set("maxmemory", used + 2_000_000)
                stored: list[StoredJob] = []
                with pytest.raises(StoreError, match="no room"):
                    for i in range(200):  # 64 KiB each: maxmemory is reached after about 30
                        job = StoredJob(b"f", b"u%d" % i, bytes(65536), 1)
                        await store.add([job])
                        stored.append(job)
                assert len(stored) > 5
                await store.settle(Settlement(done=[j.key for j in stored]))
                assert await client.dbsize() == 0
                await store.add([StoredJob(b"f", b"again", b"x", 1)])
            finally:
                await store.close()
                await client.aclose()

        run(go())
    finally:
        proc.terminate()
        proc.wait(10)
    assert _store_lines(caplog, "no room") == 1 and _store_lines(caplog, "has room again") == 1, caplog.text


def test_reopening_a_mysql_queue_logs_no_driver_warning(tmp_path, caplog: pytest.LogCaptureFixture):
    """A restart on an existing table printed the driver's "Table '…' already exists" (MySQL's note
    on CREATE TABLE IF NOT EXISTS, logged by asyncmy as a warning) on stderr: the table is now
    created only when it is missing."""
    gen = fresh_backend("mysql", tmp_path)
    backend = next(gen)
    caplog.set_level(logging.INFO)

    async def go():
        for _ in range(2):
            store = backend.store()
            await store.open()
            await store.add(jobs(1))
            await store.close()

    try:
        run(go())
        assert run(backend.count()) == 1
    finally:
        next(gen, None)
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("asyncmy")]


def test_closing_with_unsettled_adds_says_they_may_run(tmp_path, caplog: pytest.LogCaptureFixture):
    """A lost reply, then the store is closed while the database is still out of reach: it cannot
    delete those jobs, and says how many may run after a restart."""
    gen = fresh_backend("redis", tmp_path)
    backend = next(gen)
    caplog.set_level(logging.WARNING, logger="geartrain.store")

    async def go():
        proxy = await Proxy(PORTS["redis"]).start()
        backend.port = proxy.port
        store = backend.store()
        store.connect_timeout = 1.0  # type: ignore[attr-defined]
        await store.open()
        proxy.hold_replies_after(COMMIT_MARK["redis"])
        add = asyncio.ensure_future(store.add(jobs(2, tag=b"lost")))
        await asyncio.wait_for(proxy.held.wait(), 10)
        await until(lambda: backend.has_job(b"f", b"lost1"), "the add never reached the database")
        await proxy.cut()
        with pytest.raises(StoreError):
            await asyncio.wait_for(add, 20)
        await store.close()

    try:
        run(go())
    finally:
        next(gen, None)
    assert "2 job(s) answered QUEUE_ERROR may be in" in caplog.text


def test_sqlite_without_room_for_a_reserve_file_still_stores(tmp_path, caplog: pytest.LogCaptureFixture):
    """A reserve the filesystem cannot hold (here: a directory in its place) is no full disk: the
    store warns once and goes on, rather than refusing every job."""
    caplog.set_level(logging.WARNING, logger="geartrain.store")
    backend = Backend("sqlite", tmp_path)
    Path(str(backend.path) + "-reserve").mkdir()

    async def go():
        store = backend.store()
        await store.open()
        try:
            await store.add(jobs(3))
            assert len(await store.replay()) == 3
        finally:
            await store.close()

    run(go())
    assert _store_lines(caplog, "cannot keep a reserve") == 1
