"""Background submissions are acknowledged (JOB_CREATED) or raise: none is lost when the program ends (issue #13).

The first tests run what a user writes, a script whose ``async with AsyncClient(...)`` block submits N
background jobs and then ends, as a real process against a real ``geartrain serve``, and count what the
server queued. The others check the client's side of the rule against scripted servers.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from geartrain.adminclient import AdminClient
from geartrain.client import AsyncClient, Task
from geartrain.errors import JobsNotCreated, JobTimeout, ServerError
from tests.conftest import ROOT
from tests.test_client_core import scripted

N = 20_000

SCRIPTS = {
    # each submit awaited, as `await client.submit_job(f, d, background=True)` reads
    "awaited": """
        async def main(address, n):
            async with AsyncClient(address) as client:
                for i in range(n):
                    job = await client.submit_job("bg", str(i), background=True)
                    assert job.handle, job
    """,
    # fire and forget: tasks that submit, never awaited by the block
    "tasks": """
        async def main(address, n):
            async with AsyncClient(address) as client:
                for i in range(n):
                    asyncio.get_running_loop().create_task(client.submit_job("bg", str(i), background=True))
    """,
    # the pipelined batch: one write for all, then every JOB_CREATED
    "submit_many": """
        async def main(address, n):
            async with AsyncClient(address) as client:
                jobs = await client.submit_many((("bg", str(i)) for i in range(n)), background=True)
                assert all(job.handle for job in jobs)
    """,
}


@pytest.mark.parametrize("style", sorted(SCRIPTS))
def test_every_background_submit_of_a_script_that_ends_is_queued(geartrain, tmp_path, style):
    script = tmp_path / "submit_bg.py"
    script.write_text("import asyncio, sys\nfrom geartrain.client import AsyncClient\n"
                      + textwrap.dedent(SCRIPTS[style])
                      + "\nasyncio.run(main(sys.argv[1], int(sys.argv[2])))\n")
    done = subprocess.run([sys.executable, str(script), geartrain.address, str(N)], cwd=ROOT, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert AdminClient(geartrain.address).status()["bg"].total == N


def test_a_background_submit_returns_with_its_handle_or_raises():
    async def main():
        async with scripted() as (script, client):
            job = await client.submit_job("anything", b"x", background=True)
            assert job.handle == b"H:script:1" and job.done()
            with pytest.raises(ServerError, match="Job queue is full"):
                await client.submit_job("refused", b"x", background=True)
            assert script.submits == 2

    asyncio.run(main())


def test_submit_many_pipelines_and_raises_for_the_refused_ones():
    async def main():
        async with scripted() as (script, client):
            jobs = await client.submit_many([("a", b"1"), Task("b", b"2", background=True),
                                             {"function": "c", "data": b"3", "background": True}],
                                            background=True)
            assert [j.handle for j in jobs] == [b"H:script:1", b"H:script:2", b"H:script:3"]
            with pytest.raises(JobsNotCreated) as caught:
                await client.submit_many([("ok", b""), ("refused", b""), ("ok", b"")], background=True)
            assert len(caught.value.jobs) == 1 and isinstance(caught.value.jobs[0].error, ServerError)
            assert script.submits == 6

    asyncio.run(main())


def test_leaving_the_block_raises_for_fire_and_forget_submits_that_were_refused():
    async def main():
        async with scripted() as (script, client):
            loop = asyncio.get_running_loop()
            for func in ("ok", "refused", "ok"):
                loop.create_task(client.submit_job(func, b"", background=True))

    with pytest.raises(JobsNotCreated) as caught:
        asyncio.run(main())
    assert len(caught.value.jobs) == 1 and caught.value.jobs[0].function == b"refused"


async def _mute_server() -> tuple[asyncio.AbstractServer, str]:
    """A server that reads everything and answers nothing."""
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    return server, f"127.0.0.1:{server.sockets[0].getsockname()[1]}"


def test_unacknowledged_background_jobs_make_close_and_run_report_them():
    async def main():
        server, address = await _mute_server()
        try:
            client = AsyncClient(address, close_timeout=0.2, exceptions=False)
            tasks = [Task("bg", b"x", background=True)]
            await client.run(tasks, timeout=0.2)
            assert isinstance(tasks[0].error, JobTimeout)  # not a task with neither result nor error
            asyncio.get_running_loop().create_task(client.submit_job("bg", b"y", background=True))
            with pytest.raises(JobsNotCreated) as caught:
                await client.close()
            # the task's job, still unacknowledged, and the fire-and-forget one
            assert [j.data for j in caught.value.jobs] == [b"x", b"y"]
        finally:
            server.close()

    asyncio.run(main())
