"""`geartrain result` against a running server: the data on stdout, the outcome on stderr, the exit status, and
the progress display while it waits on a real terminal (a pty)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from geartrain.client import Client
from geartrain.protocol.packets import T
from tests.cli.util import InProcess, env
from tests.conftest import ROOT, Server, start_geartrain
from tests.interop.wire import Wire
from tests.server.test_http import grab


@pytest.fixture
def cli(capsysbinary, monkeypatch):
    return InProcess(capsysbinary, monkeypatch)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_geartrain(tmp_path_factory.mktemp("result"), "--policy", "kept", "keep=60")
    yield s
    s.stop()


def test_outcomes_and_exit_statuses(server: Server, cli) -> None:
    with Client(server.address) as client, Wire(server.host, server.port) as worker:
        worker.send(T.CAN_DO, b"kept")
        done = client.submit_background("kept", b"", unique="cli-1")
        worker.send(T.WORK_COMPLETE, grab(worker)[0], b"\x00the data\n")
        raised = client.submit_background("kept", b"")
        worker.send(T.WORK_EXCEPTION, grab(worker)[0], b"KeyError: 'k'")
        failed = client.submit_background("kept", b"")
        worker.send(T.WORK_FAIL, grab(worker)[0])
        queued = client.submit_background("cli-nobody", b"")
    for key in (done.handle.decode(), "cli-1"):
        out = cli("result", "--servers", server.address, key)
        assert (out.returncode, out.stdout, out.stderr) == (0, b"\x00the data\n", b"complete\n")
    out = cli("result", "--servers", server.address, raised.handle.decode())
    assert (out.returncode, out.stdout, out.stderr) == (1, b"", b"exception: KeyError: 'k'\n")
    out = cli("result", "--servers", server.address, failed.handle.decode())
    assert (out.returncode, out.stderr) == (1, b"failed\n")
    out = cli("result", "--servers", server.address, "no-such-job")
    assert out.returncode == 2 and b"no server knows job no-such-job" in out.stderr
    out = cli("result", "--servers", server.address, queued.handle.decode(), "--wait", "0.3")
    assert (out.returncode, out.stdout, out.stderr) == (3, b"", b"queued\n")  # no progress display: not a terminal


def test_waiting_on_a_terminal_shows_the_progress(server: Server) -> None:
    with Client(server.address) as client, Wire(server.host, server.port) as worker:
        job = client.submit_background("kept", b"")
        worker.send(T.CAN_DO, b"kept")
        handle = grab(worker)[0]
        worker.send(T.WORK_STATUS, handle, b"3", b"8")
        pid, fd = pty.fork()
        if pid == 0:  # the child: `geartrain result` with stdin, stdout and stderr on the pty
            os.chdir(ROOT)
            os.execve(sys.executable, [sys.executable, "-m", "geartrain", "result", "--servers", server.address,
                                       handle.decode(), "--wait", "30"], {**env(), "COLUMNS": "120", "TERM": "xterm"})
        seen = b""
        try:
            deadline = time.monotonic() + 20
            while b"3/8" not in seen and time.monotonic() < deadline:
                if select.select([fd], [], [], 0.5)[0]:
                    seen += os.read(fd, 65536)
            assert b"running" in seen and b"3/8" in seen, seen
            worker.send(T.WORK_COMPLETE, handle, b"finished")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if select.select([fd], [], [], 0.5)[0]:
                    try:
                        chunk = os.read(fd, 65536)
                    except OSError:  # the child closed the pty
                        break
                    if not chunk:
                        break
                    seen += chunk
        finally:
            _, status = os.waitpid(pid, 0)
            os.close(fd)
        assert os.waitstatus_to_exitcode(status) == 0
        assert b"finished" in seen and b"complete" in seen
        assert job.handle == handle


def test_a_server_that_cannot_say(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "geartrain", "result", "--servers", "127.0.0.1:1", "H:x:1"],
                         capture_output=True, cwd=ROOT, env=env(), timeout=30)
    assert out.returncode == 2 and b"cannot connect" in out.stderr
