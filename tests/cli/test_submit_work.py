"""`geartrain submit` and `geartrain work` together, against both servers."""

from __future__ import annotations

import signal
import time

import pytest

from geartrain.adminclient import AdminClient
from tests.cli.util import InProcess, start, stop


@pytest.fixture
def cli(capsysbinary, monkeypatch):
    return InProcess(capsysbinary, monkeypatch)


def wait_workers(address: str, function: str, n: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = AdminClient(address).status().get(function)
        if st and st.workers >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{n} worker(s) for {function} never registered")


def test_submit_to_a_command_worker(any_server, cli):
    worker = start("work", "--servers", any_server.address, "-f", "upper", "--", "tr", "a-z", "A-Z")
    try:
        wait_workers(any_server.address, "upper", 1)
        out = cli("submit", "--servers", any_server.address, "-f", "upper", "hello", "world")
        assert out.returncode == 0, out.stderr
        assert out.stdout == b"HELLOWORLD"
        out = cli("submit", "-f", "upper", input=b"from stdin\n", GEARMAN_SERVER=any_server.address)
        assert out.stdout == b"FROM STDIN\n"
        out = cli("submit", "-h", any_server.host, "-p", str(any_server.port), "-f", "upper", "-N", "-P",
                  input=b"a\nb\nc\n")
        assert out.stdout.splitlines() == [b"upper: A", b"upper: B", b"upper: C"]
        out = cli("submit", "--servers", any_server.address, "-f", "upper", "-s", "-u", "same")
        assert out.returncode == 0 and out.stdout == b""
    finally:
        assert stop(worker) == 0


def test_failing_command_fails_the_job(any_server, cli):
    worker = start("work", "--servers", any_server.address, "-f", "broken", "--", "sh", "-c", "echo partial; exit 3")
    try:
        wait_workers(any_server.address, "broken", 1)
        out = cli("submit", "--servers", any_server.address, "-f", "broken", "x")
        assert out.returncode == 1
        assert b"failed" in out.stderr
        assert out.stdout == b"partial\n"  # the output of a failed command arrives as WORK_DATA
    finally:
        stop(worker)


def test_lines_mode_streams_work_data(any_server, cli):
    worker = start("work", "--servers", any_server.address, "-f", "count", "-n", "--", "seq", "3")
    try:
        wait_workers(any_server.address, "count", 1)
        out = cli("submit", "--servers", any_server.address, "-f", "count", "x")
        assert out.returncode == 0 and out.stdout == b"1\n2\n3\n"
    finally:
        stop(worker)


def test_background_prints_the_handle_and_count_exits(any_server, cli):
    out = cli("submit", "--servers", any_server.address, "-f", "later", "-b", "one", "two")
    assert out.returncode == 0
    handles = out.stdout.split()
    assert len(handles) == 2 and all(h.startswith(b"H:") for h in handles)
    worker = start("work", "--servers", any_server.address, "-f", "later", "-c", "2")
    assert worker.wait(20) == 0
    assert AdminClient(any_server.address).status()["later"].total == 0


def test_processes_and_graceful_sigterm(any_server, cli):
    sup = start("work", "--servers", any_server.address, "-f", "nap", "--processes", "2", "--",
                "sh", "-c", "sleep 0.5; cat")
    try:
        wait_workers(any_server.address, "nap", 2)
        client = start("submit", "--servers", any_server.address, "-f", "nap", "a", "b")
        deadline = time.monotonic() + 10
        while AdminClient(any_server.address).status().get("nap").running < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        sup.send_signal(signal.SIGTERM)  # both jobs are running: they finish, then the workers exit
        out, err = client.communicate(timeout=20)
        assert client.returncode == 0, err
        assert sorted(out) == sorted(b"ab")
        assert sup.wait(10) == 0
    finally:
        stop(sup)


def test_big_payload_through_a_command(any_server, cli):
    worker = start("work", "--servers", any_server.address, "-f", "cat", "--", "cat")
    try:
        wait_workers(any_server.address, "cat", 1)
        payload = bytes(range(256)) * 4096  # 1 MiB, binary
        out = cli("submit", "--servers", any_server.address, "-f", "cat", input=payload)
        assert out.returncode == 0 and out.stdout == payload
    finally:
        stop(worker)


def test_work_names_a_command_that_cannot_run(cli):
    out = cli("work", "-f", "x", "--", "/no/such/binary")
    assert out.returncode == 2
    assert out.stderr == b"geartrain work: cannot run /no/such/binary: no such file\n"
    out = cli("work", "-f", "x", "--processes", "2", "--", "no-such-command-here")
    assert out.returncode == 2
    assert out.stderr == b"geartrain work: cannot run no-such-command-here: not found in PATH\n"


def test_a_command_gone_after_start_fails_its_jobs_naming_it(geartrain, cli, tmp_path):
    script = tmp_path / "upper.sh"
    script.write_text("#!/bin/sh\ntr a-z A-Z\n")
    script.chmod(0o755)
    worker = start("work", "--servers", geartrain.address, "-f", "upper", "--", str(script))
    try:
        wait_workers(geartrain.address, "upper", 1)
        assert cli("submit", "--servers", geartrain.address, "-f", "upper", "ok").stdout == b"OK"
        script.unlink()
        out = cli("submit", "--servers", geartrain.address, "-f", "upper", "gone")
        assert out.returncode == 1
        assert out.stderr.decode() == (f"geartrain submit: upper: job raised: CommandError: cannot run {script}: "
                                       f"no such file or directory\n")
    finally:
        stop(worker)
    log = worker.stderr.read().decode()
    line = next(ln for ln in log.splitlines() if "raised" in ln)
    assert line.endswith(f" (upper) raised CommandError: cannot run {script}: no such file or directory")
    assert "b'" not in line and "Traceback (most recent call last)" in log
