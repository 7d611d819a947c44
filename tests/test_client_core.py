"""AsyncClient's packet handling against a scripted job server (a few lines of asyncio, no real server).

The script answers each SUBMIT_JOB as the function name says, so the client's fast paths (JOB_CREATED and
WORK_COMPLETE) and the rarer ones (coalesced handles, WORK_FAIL with gearmand's trailing NUL, progress,
replies split over many reads or packed into one) are checked packet by packet.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from geartrain.client import AsyncClient, Task
from geartrain.errors import JobException, JobFailed
from geartrain.protocol import Parser, pack_res
from geartrain.protocol.packets import REQ, T
from geartrain.transport import _Protocol, run

SUBMITS = {int(T.SUBMIT_JOB), int(T.SUBMIT_JOB_BG), int(T.SUBMIT_JOB_HIGH), int(T.SUBMIT_JOB_LOW)}


class Script:
    """What the scripted server does: ``split`` writes its replies one byte at a time; ``trickle`` writes
    each reply packet on its own, a loop turn apart (as a busy server does); ``hold`` keeps the results of
    every job back until ``release()`` (so jobs end after the client started waiting)."""

    def __init__(self, split: bool = False, trickle: bool = False, hold: bool = False) -> None:
        self.split = split
        self.trickle = trickle
        self.hold = hold
        self.held: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.uniques: dict[bytes, bytes] = {}
        self.count = 0
        self.submits = 0

    def answer(self, ptype: int, args: tuple) -> tuple[bytes, bytes]:
        """(reply at once, result) for one packet."""
        if ptype == T.OPTION_REQ:
            return pack_res(T.OPTION_RES, args[0]), b""
        if ptype == T.ECHO_REQ:
            return pack_res(T.ECHO_RES, args[0]), b""
        if ptype not in SUBMITS:
            return pack_res(T.ERROR, b"ERR", b"unexpected"), b""
        self.submits += 1
        func, unique, data = args
        if func == b"refused":
            return pack_res(T.ERROR, b"QUEUE_ERROR", b"Job queue is full"), b""
        if unique and unique in self.uniques:  # coalesce: the same handle, one result for both
            return pack_res(T.JOB_CREATED, self.uniques[unique]), b""
        self.count += 1
        handle = b"H:script:%d" % self.count
        if unique:
            self.uniques[unique] = handle
        created = pack_res(T.JOB_CREATED, handle)
        if ptype == T.SUBMIT_JOB_BG:
            return created, b""
        if func == b"rev":
            result = pack_res(T.WORK_COMPLETE, handle, data[::-1])
        elif func == b"fail":
            result = pack_res(T.WORK_FAIL, handle)
        elif func == b"fail-nul":  # gearmand's WORK_EXCEPTION for a client without the option
            result = pack_res(T.WORK_FAIL, handle + b"\0")
        elif func == b"exc":
            result = pack_res(T.WORK_EXCEPTION, handle, b"ValueError: " + data)
        elif func == b"progress":
            result = (pack_res(T.WORK_DATA, handle, b"part") + pack_res(T.WORK_STATUS, handle, b"1", b"2")
                      + pack_res(T.WORK_WARNING, handle, b"careful") + pack_res(T.WORK_COMPLETE, handle, data))
        else:
            result = b""  # nobody works it
        return created, result

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        parser = Parser(REQ, text=False)
        while data := await reader.read(65536):
            out = []
            for ptype, args in parser.feed(data):
                created, result = self.answer(ptype, args)
                out.append(created)
                if self.hold:
                    self.held.append(result)
                else:
                    out.append(result)
            if self.trickle:
                for packet in out:
                    await self.write(writer, packet)
                    await asyncio.sleep(0)
            else:
                await self.write(writer, b"".join(out))

    async def write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if self.split:
            for i in range(len(data)):
                writer.write(data[i:i + 1])
                await writer.drain()
        else:
            writer.write(data)
            await writer.drain()

    async def release(self) -> None:
        held, self.held = b"".join(self.held), []
        await self.write(self.writers[-1], held)


@asynccontextmanager
async def scripted(**kwargs: bool) -> AsyncIterator[tuple[Script, AsyncClient]]:
    script = Script(**kwargs)
    server = await asyncio.start_server(script.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with AsyncClient(f"127.0.0.1:{port}", timeout=10) as client:
            yield script, client
    finally:
        server.close()
        for w in script.writers:
            w.close()


@pytest.mark.parametrize("split", [False, True], ids=["whole", "byte-by-byte"])
def test_run_gets_every_result_and_handle(split):
    async def main():
        async with scripted(split=split) as (_, client):
            tasks = [Task("rev", b"job%d" % i) for i in range(300 if not split else 40)]
            seen = []
            await client.run(tasks, max_in_flight=7, on_done=seen.append)
            assert all(t.result == t.data[::-1] and t.error is None for t in tasks)
            assert len({t.handle for t in tasks}) == len(tasks)
            assert sorted(map(id, seen)) == sorted(map(id, tasks))

    asyncio.run(main())


def test_run_reports_failures_exceptions_and_refusals_on_their_tasks():
    async def main():
        async with scripted() as (_, client):
            tasks = [Task("rev", b"ab"), Task("fail", b""), Task("exc", b"x"), Task("fail-nul", b""),
                     Task("refused", b""), Task("rev", b"cd"), Task("progress", b"whole")]
            await client.run(tasks, max_in_flight=2)
            assert tasks[0].result == b"ba" and tasks[5].result == b"dc" and tasks[6].result == b"whole"
            assert isinstance(tasks[1].error, JobFailed) and not isinstance(tasks[1].error, JobException)
            assert isinstance(tasks[2].error, JobException) and tasks[2].error.data == b"ValueError: x"
            assert isinstance(tasks[3].error, JobFailed)
            assert "Job queue is full" in str(tasks[4].error)
            assert await client.echo(b"still fine") == b"still fine"

    asyncio.run(main())


def test_a_job_that_ended_before_anyone_waited_and_one_that_ended_after():
    async def main():
        async with scripted(hold=True) as (script, client):
            early = await client.submit_job("rev", b"abc")
            failing = await client.submit_job("fail", b"")
            late = await client.submit_job("rev", b"xyz")
            assert await early.created() and not early.done()
            waiting = asyncio.ensure_future(late.result())
            await asyncio.sleep(0.01)
            assert not waiting.done()
            await script.release()
            assert await waiting == b"zyx"
            assert early.done() and await early == b"cba" and await early.result() == b"cba"  # awaited twice
            for _ in range(2):  # the same error each time
                with pytest.raises(JobFailed):
                    await failing.result()
            assert [ev.kind for ev in [e async for e in failing.events()]] == ["fail"]
            assert [(ev.kind, ev.data) async for ev in early.events()] == [("complete", b"cba")]

    asyncio.run(main())


def test_progress_events_and_callbacks_then_the_result():
    async def main():
        async with scripted(split=True) as (_, client):
            calls = []
            job = await client.submit_job("progress", b"end", on_data=lambda j, d: calls.append(("data", d)),
                                          on_status=lambda j, n, d: calls.append(("status", n, d)),
                                          on_warning=lambda j, w: calls.append(("warning", w)))
            events = [(ev.kind, ev.data) async for ev in job.events()]
            assert events == [("data", b"part"), ("status", (1, 2)), ("warning", b"careful"), ("complete", b"end")]
            assert calls == [("data", b"part"), ("status", 1, 2), ("warning", b"careful")]
            assert (job.numerator, job.denominator) == (1, 2) and await job == b"end"

    asyncio.run(main())


def test_same_unique_twice_in_one_client_both_get_the_result():
    async def main():
        async with scripted(hold=True) as (script, client):
            a = await client.submit_job("rev", b"same", unique="u1")
            b = await client.submit_job("rev", b"same", unique="u1")
            c = await client.submit_job("rev", b"other")
            await asyncio.gather(a.created(), b.created(), c.created())
            assert a.handle == b.handle != c.handle
            await script.release()
            assert await a == b"emas" and await b == b"emas" and await c == b"rehto"

    asyncio.run(main())


def test_background_jobs_end_with_their_handle():
    async def main():
        async with scripted() as (script, client):
            job = await client.submit_background("anything", b"x")
            assert job.done() and job.handle == b"H:script:1" and job.server == client.addresses[0]
            tasks = [Task("anything", b"y", background=True) for _ in range(5)]
            await client.run(tasks, max_in_flight=2)
            assert all(t.error is None and t.result == t.handle and t.handle for t in tasks)
            assert script.submits == 6

    asyncio.run(main())


@pytest.mark.parametrize("linger", [0.001, 0.0], ids=["linger", "no-linger"])
def test_a_wide_window_with_and_without_lingering_reads(linger, monkeypatch):
    waits = []
    resume = _Protocol._resume
    monkeypatch.setattr(_Protocol, "_resume", lambda self: (waits.append(1), resume(self)))

    async def main():
        async with scripted(trickle=True) as (_, client):
            link = client._list[0].link
            hooks = []
            tasks = [Task("rev", b"%d" % i) for i in range(1000)]
            await client.run(tasks, max_in_flight=100, linger=linger, on_done=lambda t: hooks.append(link.after_read))
            assert all(t.result == t.data[::-1] for t in tasks)
            assert (hooks[0] is not None) == (linger > 0)  # the hook is there only while its run lasts
            assert link.after_read is None
            assert bool(waits) == (linger > 0)  # replies trickling in one by one made it wait before reading
            assert await client.echo(b"reading") == b"reading"
            assert len(await client.run([Task("rev", b"x") for _ in range(150)], max_in_flight=10)) == 150

    run(main())  # on uvloop, as the benchmark and the sync Client run


def test_a_run_that_times_out_while_lingering_leaves_the_connection_reading():
    async def main():
        async with scripted() as (_, client):
            tasks = [Task("nobody", b"") for _ in range(100)] + [Task("rev", b"x") for _ in range(100)]
            await client.run(tasks, max_in_flight=64, timeout=0.2)
            assert all(t.error is not None for t in tasks[:100])
            assert client._list[0].link.after_read is None
            assert await client.echo(b"still reading") == b"still reading"
            assert await client.submit("rev", b"abc") == b"cba"

    asyncio.run(main())
