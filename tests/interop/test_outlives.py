"""What outlives a job (issue #15), through real processes on every queue: memory, SQLite, PostgreSQL, MariaDB,
Redis. A raising Python worker and a failing libgearman C worker; retries seen at the times their policy gives
(within a tolerance); the failed-job registry surviving kill -9 of the server (durable queues); requeue from the
HTTP API and from the command line; a kept result read over the admin port with a raw socket.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from geartrain.protocol import T
from tests.conftest import ROOT, Server, free_port, start_geartrain
from tests.server.store.backends import KINDS, Backend, need_service

from .conftest import wait_workers
from .wire import connect, wait_for

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(240)]


def spot(kind: str, tmp_path: Path) -> Iterator[str]:
    """The --queue URL of a fresh spot on the backend KIND."""
    if kind == "memory":
        yield "memory"
        return
    need_service(kind)
    backend = Backend(kind, tmp_path)
    yield backend.url
    asyncio.run(backend.drop())


@pytest.fixture(params=["memory", *KINDS])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from spot(request.param, tmp_path)


@pytest.fixture(params=KINDS)
def durable_queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from spot(request.param, tmp_path)


class Running:
    """A geartrain server on QUEUE with an HTTP port, started again on the same queue and ports after a kill."""

    def __init__(self, tmp: Path, queue: str, *args: str) -> None:
        self.tmp, self.queue, self.args = tmp, queue, args
        self.port, self.http = free_port(), free_port()
        self.server: Server = self.start()

    def start(self) -> Server:
        return start_geartrain(self.tmp, "--queue", self.queue, "--http-port", str(self.http), *self.args,
                               port=self.port)

    def kill9_and_start(self) -> None:
        self.server.proc.send_signal(signal.SIGKILL)
        self.server.proc.wait(10)
        self.server = self.start()

    def admin(self, line: str) -> bytes:
        """LINE's reply over the Gearman port, read with a raw socket up to its end."""
        with connect(self.server) as wire:
            wire.text(line)
            return b"".join(wire.listing()) if line.split()[0] in ("result", "failed") else wire.line()

    def http_json(self, method: str, path: str) -> tuple[int, object]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.http}{path}", method=method,
                                         headers={"Host": f"127.0.0.1:{self.http}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def stop(self) -> None:
        self.server.stop()


def fields(reply: bytes) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = {}
    for line in reply.split(b"\n"):
        if line and line != b".":
            name, _, value = line.partition(b"\t")
            out.setdefault(name, []).append(value)
    return out


def submit_bg(server: Server, function: bytes, data: bytes, unique: bytes = b"") -> bytes:
    with connect(server) as client:
        return client.submit(T.SUBMIT_JOB_BG, function, unique, data)


FLAKY_WORKER = r"""
import sys, time
from geartrain.worker import Worker
tries = []
def flaky(job):
    tries.append(time.time())
    print("TRY", len(tries), repr(time.time()), flush=True)
    if len(tries) < 3:
        raise ValueError(f"not yet: try {len(tries)}")
    return b"done after %d tries" % len(tries)
worker = Worker([sys.argv[1]])
worker.register("flaky", flaky)
worker.work()
"""


def test_a_raising_python_worker_is_retried_at_its_policys_times_and_its_result_is_kept(tmp_path, queue, background):
    run = Running(tmp_path, queue, "--policy", "flaky", "tries=4 delay=1 backoff=exponential factor=2 keep=300")
    try:
        worker = background([sys.executable, "-c", FLAKY_WORKER, run.server.address], cwd=ROOT)
        wait_workers(run.server, b"flaky")
        handle = submit_bg(run.server, b"flaky", b"x", b"flaky-1")
        assert wait_for(lambda: fields(run.admin("result flaky-1"))[b"state"] == [b"complete"], timeout=30)
        reply = fields(run.admin(f"result {handle.decode()}"))
        assert reply[b"tries"] == [b"3"] and reply[b"unique"] == [b"flaky-1"]
        assert base64.b64decode(reply[b"data"][0]) == b"done after 3 tries"
        out, _ = worker.stop()
        times = [float(line.split()[2]) for line in out.splitlines() if line.startswith(b"TRY")]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        # delays 1 s then 2 s; the poll of the server's timer and the worker's round trips add a little
        assert len(times) == 3 and 0.9 <= gaps[0] < 1.9 and 1.9 <= gaps[1] < 2.9, gaps
        status, job = run.http_json("GET", f"/api/jobs/{handle.decode()}")
        assert status == 200 and job["state"] == "complete" and job["tries"] == 3
    finally:
        run.stop()


def test_a_failing_c_worker_fills_the_registry_which_outlives_kill_9_and_requeues_from_http_and_the_cli(
        tmp_path, queue, background, c_programs):
    run = Running(tmp_path, queue, "--policy", "fail", "tries=2 delay=0.2", "--policy", "exc", "tries=2 delay=0.2")
    try:
        worker = background([str(c_programs["gt_worker"]), "-p", str(run.server.port), "-f", "fail", "-f", "exc"])
        wait_workers(run.server, b"fail")
        submit_bg(run.server, b"fail", b"payload-1", b"u-fail")
        submit_bg(run.server, b"exc", b"payload-2", b"u-exc")
        assert wait_for(lambda: run.admin("failed").count(b"\n") == 3, timeout=30)  # two rows and "."
        rows = {line.split(b"\t")[1]: line.split(b"\t") for line in run.admin("failed").split(b"\n")[:-2]}
        assert rows[b"fail"][3] == b"2" and rows[b"fail"][6] == b"failed"
        assert rows[b"exc"][6] == b"exception: oops:payload-2"
        worker.stop()
        if queue != "memory":  # the registry is in the store: kill -9 loses none of it
            run.kill9_and_start()
            assert run.admin("failed").count(b"\n") == 3
        status, listed = run.http_json("GET", "/api/failed")
        assert status == 200 and {e["function"] for e in listed["failed"]} == {"fail", "exc"}
        by_function = {e["function"]: e["id"] for e in listed["failed"]}
        status, _ = run.http_json("POST", f"/api/failed/{by_function['fail']}/requeue")
        assert status == 200
        cli = subprocess.run([sys.executable, "-m", "geartrain", "admin", "-p", str(run.server.port), "failed",
                              "requeue", "exc"], capture_output=True, text=True, timeout=30, cwd=ROOT)
        assert cli.returncode == 0, cli.stderr
        assert run.admin("failed") == b".\n"
        with connect(run.server) as admin:
            assert sorted(admin.admin("status")) == [b".\n", b"exc\t1\t0\t0\n", b"fail\t1\t0\t0\n"]
    finally:
        run.stop()


def test_policies_set_over_the_admin_port_are_kept_across_a_restart(tmp_path, queue):
    run = Running(tmp_path, queue)
    try:
        assert run.admin("policy resize tries=5 delay=3 keep=60") == b"OK\r\n"
        if queue != "memory":
            run.kill9_and_start()
            assert run.admin("policy resize") == b"OK tries=5 delay=3 keep=60\n"
        else:
            run.kill9_and_start()
            assert run.admin("policy resize") == b"OK none\n"  # memory keeps nothing
    finally:
        run.stop()


def test_a_job_waiting_for_its_next_try_keeps_its_tries_across_a_restart(tmp_path, durable_queue, background):
    run = Running(tmp_path, durable_queue, "--policy", "flaky", "tries=2 delay=3")
    try:
        worker = background([sys.executable, "-c", FLAKY_WORKER, run.server.address], cwd=ROOT)
        wait_workers(run.server, b"flaky")
        submit_bg(run.server, b"flaky", b"x", b"restart-1")
        assert wait_for(lambda: fields(run.admin("result restart-1"))[b"state"] == [b"waiting"], timeout=20)
        worker.stop()
        run.kill9_and_start()  # the try it had is in the store with the job
        reply = fields(run.admin("result restart-1"))
        assert reply[b"state"] == [b"waiting"] and reply[b"tries"] == [b"2"]
        worker = background([sys.executable, "-c", FLAKY_WORKER, run.server.address], cwd=ROOT)
        # its second and last try fails too (the fresh worker's first): into the registry
        assert wait_for(lambda: b"restart-1" in run.admin("failed"), timeout=30)
        worker.stop()
    finally:
        run.stop()


def test_a_foreground_client_sees_nothing_new_on_the_wire(tmp_path, c_programs, background):
    # a libgearman client and worker against a server with no policy set: the same packets as ever
    run = Running(tmp_path, "memory")
    try:
        background([str(c_programs["gt_worker"]), "-p", str(run.server.port), "-f", "fail"])
        wait_workers(run.server, b"fail")
        out = subprocess.run([str(c_programs["gt_client"]), "-p", str(run.server.port), "submit", "fg", "fail", "-",
                              "x"], capture_output=True, timeout=30)
        assert out.returncode == 0 and out.stdout.splitlines()[1:] == [b"FAIL"]
        assert run.admin("failed") == b".\n"  # no policy: no registry
    finally:
        run.stop()
