"""libgearman's `gearman` tool as client and as worker, against our server and against gearmand."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import run, wait_workers
from .wire import connect, status_table, wait_for

pytestmark = pytest.mark.interop


def g(gearman_bin: str, server, *args: str) -> list[str]:
    return [gearman_bin, "-h", server.host, "-p", str(server.port), *args]


def recorder(path: Path) -> list[str]:
    """A worker command that appends each workload as one line to PATH and returns it."""
    return ["sh", "-c", f'cat >> "{path}"; echo >> "{path}"']


def test_worker_command_and_foreground_client(any_server, gearman_bin, background):
    background(g(gearman_bin, any_server, "-w", "-f", "rev", "--", "rev"))
    wait_workers(any_server, b"rev")
    out = run(g(gearman_bin, any_server, "-f", "rev", "hello"))
    assert (out.returncode, out.stdout) == (0, b"olleh")
    out = run(g(gearman_bin, any_server, "-f", "rev", "-u", "my-unique", "abc"))
    assert (out.returncode, out.stdout) == (0, b"cba")
    out = run(g(gearman_bin, any_server, "-P", "-f", "rev", "xyz"))
    assert (out.returncode, out.stdout) == (0, b"rev: zyx")


def test_one_job_per_line(any_server, gearman_bin, background):
    background(g(gearman_bin, any_server, "-w", "-f", "rev", "--", "rev"))
    wait_workers(any_server, b"rev")
    out = run(g(gearman_bin, any_server, "-n", "-f", "rev"), input=b"one\ntwo\n")
    assert (out.returncode, out.stdout) == (0, b"eno\nowt\n")
    out = run(g(gearman_bin, any_server, "-N", "-f", "rev"), input=b"one\ntwo\n")
    assert (out.returncode, out.stdout) == (0, b"enoowt")


def test_binary_workload_through_stdin(any_server, gearman_bin, background):
    background(g(gearman_bin, any_server, "-w", "-f", "cat", "--", "cat"))
    wait_workers(any_server, b"cat")
    # every byte value, NULs included; under 64 KiB because `gearman -w` writes all of stdin before reading
    payload = bytes(range(256)) * 64
    out = run(g(gearman_bin, any_server, "-f", "cat"), input=payload)
    assert out.returncode == 0
    assert out.stdout == payload


def test_background_jobs_run(any_server, gearman_bin, background, tmp_path):
    log = tmp_path / "ran.txt"
    background(g(gearman_bin, any_server, "-w", "-f", "rec", "--", *recorder(log)))
    wait_workers(any_server, b"rec")
    for word in ("one", "two"):
        out = run(g(gearman_bin, any_server, "-b", "-f", "rec", word))
        assert (out.returncode, out.stdout) == (0, b"")
    assert wait_for(lambda: log.exists() and sorted(log.read_text().split()) == ["one", "two"])


def test_verbose_background_prints_its_handle(any_server, gearman_bin):
    out = run(g(gearman_bin, any_server, "-v", "-b", "-f", "nobody", "x"))
    assert out.returncode == 0
    m = re.fullmatch(rb"Task created: (\S+)\n", out.stdout)
    assert m, out.stdout
    with connect(any_server) as admin:
        jobs = [ln.split(b"\t")[0] for ln in admin.admin("show jobs")[:-1]]
    assert jobs == [m.group(1)]


def test_priorities_high_normal_low(any_server, gearman_bin, background, tmp_path):
    log = tmp_path / "order.txt"
    for flag, word in (("-L", "low"), (None, "normal"), ("-I", "high"), ("-L", "low2"), ("-I", "high2")):
        args = ["-b", *([flag] if flag else []), "-f", "prio", word]
        assert run(g(gearman_bin, any_server, *args)).returncode == 0
    with connect(any_server) as admin:
        assert admin.admin("prioritystatus") == [b"prio\t2\t1\t2\t0\n", b".\n"]
    worker = background(g(gearman_bin, any_server, "-w", "-c", "5", "-f", "prio", "--", *recorder(log)))
    status, _, err = worker.wait()
    assert status == 0, err
    assert log.read_text().split() == ["high", "high2", "normal", "low", "low2"]


def test_unique_coalesces_background_submissions(any_server, gearman_bin):
    for data in ("first", "second"):
        assert run(g(gearman_bin, any_server, "-b", "-u", "same-key", "-f", "co", data)).returncode == 0
    assert run(g(gearman_bin, any_server, "-b", "-u", "other-key", "-f", "co", "third")).returncode == 0
    with connect(any_server) as admin:
        assert status_table(admin)[b"co"] == (2, 0, 0)
        assert sorted(admin.admin("show unique jobs")[:-1]) == [b"other-key\n", b"same-key\n"]


def test_failing_worker_command(any_server, gearman_bin, background):
    background(g(gearman_bin, any_server, "-w", "-f", "bad", "--", "sh", "-c", "echo partial; exit 3"))
    wait_workers(any_server, b"bad")
    out = run(g(gearman_bin, any_server, "-f", "bad", "x"))
    assert out.returncode != 0
    assert out.stdout == b"partial\n"  # sent as WORK_DATA before WORK_FAIL
    assert b"Job failed" in out.stderr


def test_worker_without_command_echoes_workload(any_server, gearman_bin, background):
    worker = background(g(gearman_bin, any_server, "-w", "-c", "1", "-f", "say"))
    wait_workers(any_server, b"say")
    out = run(g(gearman_bin, any_server, "-f", "say", "some text"))
    assert (out.returncode, out.stdout) == (0, b"")
    status, stdout, _ = worker.wait()
    assert (status, stdout) == (0, b"some text")


def test_worker_count_then_exit(any_server, gearman_bin, background):
    worker = background(g(gearman_bin, any_server, "-w", "-c", "2", "-f", "rev", "--", "rev"))
    wait_workers(any_server, b"rev")
    outs = [run(g(gearman_bin, any_server, "-f", "rev", w)).stdout for w in ("ab", "cd")]
    assert outs == [b"ba", b"dc"]
    assert worker.wait()[0] == 0
    with connect(any_server) as admin:
        assert wait_for(lambda: status_table(admin)[b"rev"][2] == 0)


def test_server_from_the_environment(any_server, gearman_bin, background):
    env = {"GEARMAN_SERVER": any_server.address}
    background([gearman_bin, "-w", "-f", "rev", "--", "rev"], env=env)
    wait_workers(any_server, b"rev")
    out = run([gearman_bin, "-f", "rev", "env"], env=env)
    assert (out.returncode, out.stdout) == (0, b"vne")
