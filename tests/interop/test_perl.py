"""Perl's Gearman::Client and Gearman::Worker (perl/*.pl) against our server and against gearmand."""

from __future__ import annotations

import re

import pytest

from .conftest import PERL_DIR, run, wait_workers
from .wire import connect

pytestmark = pytest.mark.interop


def client(perl, server, *args: str) -> list[bytes]:
    out = run([perl, str(PERL_DIR / "client.pl"), server.address, *args], timeout=25)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def worker(perl, server, background, count: int = 0, *funcs: str):
    return background([perl, str(PERL_DIR / "worker.pl"), server.address, str(count), *funcs])


@pytest.mark.parametrize("priority", ["normal", "high", "low"])
def test_do_task(any_server, perl_gearman, background, priority):
    worker(perl_gearman, any_server, background, 0, "rev")
    wait_workers(any_server, b"rev")
    assert client(perl_gearman, any_server, "do", "rev", "hello", priority) == [b"RESULT olleh"]


def test_work_fail(any_server, perl_gearman, background):
    worker(perl_gearman, any_server, background, 0, "fail")
    wait_workers(any_server, b"fail")
    assert client(perl_gearman, any_server, "do", "fail", "x") == [b"FAIL"]


def test_data_status_warning_complete(any_server, perl_gearman, background):
    worker(perl_gearman, any_server, background, 0, "chatty")
    wait_workers(any_server, b"chatty")
    assert client(perl_gearman, any_server, "events", "chatty", "hi") == [
        b"DATA chunk", b"STATUS 1/2", b"WARNING careful", b"STATUS 2/2", b"COMPLETE done:hi"]


def test_exception_reaches_a_client_that_asked(any_server, perl_gearman, background):
    # a Perl worker whose function dies sends WORK_EXCEPTION (then WORK_FAIL); one job, then it exits
    worker(perl_gearman, any_server, background, 1, "die")
    wait_workers(any_server, b"die")
    lines = client(perl_gearman, any_server, "exception", "die", "x")
    assert lines and lines[0].startswith(b"EXCEPTION") and b"boom" in b"\n".join(lines), lines


def test_background_job_status_and_unique(any_server, perl_gearman, background):
    (line,) = client(perl_gearman, any_server, "bg", "perlbg", "payload", "perl-uniq")
    m = re.fullmatch(rb"HANDLE 127\.0\.0\.1:\d+//(\S+)", line)
    assert m, line
    assert client(perl_gearman, any_server, "status", line.split()[1].decode()) == [b"KNOWN 1 RUNNING 0"]
    with connect(any_server) as admin:
        assert admin.admin("show unique jobs") == [b"perl-uniq\n", b".\n"]
        assert [ln.split(b"\t")[0] for ln in admin.admin("show jobs")[:-1]] == [m.group(1)]
    worker(perl_gearman, any_server, background, 0, "rev")  # not perlbg: that job stays queued
    wait_workers(any_server, b"rev")
    assert client(perl_gearman, any_server, "adminstatus") == [b"perlbg 1 0 0", b"rev 0 0 1"]


def test_many_tasks_in_one_task_set(any_server, perl_gearman, background):
    for _ in range(2):
        worker(perl_gearman, any_server, background, 0, "rev")
    wait_workers(any_server, b"rev", count=2)
    assert client(perl_gearman, any_server, "many", "100", "rev") == [b"COMPLETED 100 WRONG 0 FAILED 0"]


def test_perl_client_with_c_worker(any_server, perl_gearman, background, c_programs):
    background([str(c_programs["gt_worker"]), "-p", str(any_server.port), "-f", "rev"])
    wait_workers(any_server, b"rev")
    assert client(perl_gearman, any_server, "do", "rev", "from perl to C") == [b"RESULT C ot lrep morf"]


@pytest.mark.parametrize("func", ["zero", "empty"])
def test_a_worker_returning_a_false_result_completes_and_goes_on(geartrain, perl_gearman, background, func):
    # Gearman::Worker sends "0" and "" as the bare handle; against gearmand 1.1.20 the client waits until the
    # worker disconnects (tests/interop/test_gearmand_bugs.py), here the job completes with an empty result
    w = worker(perl_gearman, geartrain, background, 0, func, "rev")
    wait_workers(geartrain, b"rev")
    for i in range(3):
        assert client(perl_gearman, geartrain, "do", func, f"x{i}") == [b"RESULT "]
    assert client(perl_gearman, geartrain, "do", "rev", "still here") == [b"RESULT ereh llits"]
    assert w.proc.poll() is None  # the worker lives on


def test_false_data_status_and_warning_reach_the_client(geartrain, perl_gearman, background):
    worker(perl_gearman, geartrain, background, 0, "falsy")
    wait_workers(geartrain, b"falsy")
    assert client(perl_gearman, geartrain, "events", "falsy", "x") == [
        b"DATA ", b"STATUS 0/0", b"STATUS 1/0", b"WARNING ", b"COMPLETE "]
