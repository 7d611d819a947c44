"""The command line against a server that is down, and with bad ports (issue #13): it says so at once,
clearly, and a worker says once that it keeps retrying, then when it got through."""

from __future__ import annotations

import queue
import subprocess
import threading

import pytest

from geartrain.transport import Backoff
from tests.cli.util import InProcess, start, stop
from tests.conftest import free_port, start_geartrain


@pytest.fixture
def cli(capsysbinary, monkeypatch):
    return InProcess(capsysbinary, monkeypatch)


@pytest.mark.parametrize("command", [["submit", "-f", "x", "hi"], ["work", "-f", "x"], ["admin", "status"],
                                     ["top", "--once"]])
@pytest.mark.parametrize("option", [["-p", "99999"], ["-p", "0"], ["--servers", "127.0.0.1:70000"]])
def test_a_port_out_of_range_is_a_usage_error(cli, command, option):
    with pytest.raises(SystemExit) as exit_:
        cli(command[0], *option, *command[1:])
    assert exit_.value.code == 2
    err = cli.cap.readouterr().err.decode()
    assert "ports are 1-65535" in err and f"usage: geartrain {command[0]}" in err


def test_submit_to_a_dead_server_fails_at_once_and_clearly(cli, monkeypatch):
    attempts = []
    next_delay = Backoff.next_delay
    monkeypatch.setattr(Backoff, "next_delay", lambda self: attempts.append(1) or next_delay(self))
    port = free_port()
    out = cli("submit", "-p", str(port), "-f", "reverse", "hello")
    assert out.returncode == 1
    assert out.stderr.decode() == (f"geartrain submit: reverse: cannot connect to any job server "
                                   f"(127.0.0.1:{port}: connection refused)\n")
    assert len(attempts) == 1  # one failed connect: no waiting for the server to come up


def test_admin_against_a_dead_server_prints_the_error_and_no_table(cli):
    port = free_port()
    out = cli("admin", "-p", str(port), "status")
    assert out.returncode == 1
    assert out.stdout == b""
    assert out.stderr.decode() == f"geartrain admin: 127.0.0.1:{port}: cannot connect: connection refused\n"


class Lines:
    """The stderr lines of a process, read in a thread, waited for with a bound."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.seen: list[str] = []
        self.q: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(proc.stderr,), daemon=True).start()

    def _read(self, stream) -> None:
        for raw in stream:
            self.q.put(raw.decode(errors="replace").rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 20) -> str:
        while True:
            try:
                line = self.q.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line with {text!r} on stderr; got {self.seen}") from None
            self.seen.append(line)
            if text in line:
                return line


def test_work_says_it_cannot_connect_then_that_it_connected_and_logs_jobs_with_v(tmp_path, cli):
    port = free_port()
    address = f"127.0.0.1:{port}"
    worker = start("work", "-v", "-p", str(port), "-f", "reverse", "--", "rev")
    server = None
    try:
        lines = Lines(worker)
        warning = lines.wait_for("cannot connect")
        assert warning.endswith(f"cannot connect to {address} (connection refused); retrying until it is up")
        server = start_geartrain(tmp_path, port=port)
        lines.wait_for(f"connected to {address}")
        assert sum("cannot connect" in line for line in lines.seen) == 1  # said once, not at each retry
        out = cli("submit", "-p", str(port), "-f", "reverse", "hello")
        assert out.stdout == b"olleh"
        started = lines.wait_for("started")
        assert " (reverse, 5 bytes) started" in started and "b'" not in started
        assert " (reverse) done in " in lines.wait_for("done in")
    finally:
        stop(worker)
        if server is not None:
            server.stop()


def test_work_without_v_says_when_it_cannot_connect(tmp_path):
    port = free_port()
    worker = start("work", "-p", str(port), "-f", "reverse")
    try:
        assert "retrying until it is up" in Lines(worker).wait_for("cannot connect")
    finally:
        stop(worker)
