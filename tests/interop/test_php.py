"""PHP's GearmanClient and GearmanWorker (php-gearman; php/*.php) against our server and against gearmand."""

from __future__ import annotations

import pytest

from .conftest import PERL_DIR, PHP_DIR, run, wait_workers
from .wire import connect

pytestmark = pytest.mark.interop


def client(php, server, *args: str) -> list[bytes]:
    out = run([php, str(PHP_DIR / "client.php"), server.host, str(server.port), *args], timeout=25)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def worker(php, server, background, count: int = 0, *funcs: str):
    return background([php, str(PHP_DIR / "worker.php"), server.host, str(server.port), str(count), *funcs])


@pytest.mark.parametrize("priority", ["normal", "high", "low"])
def test_do(any_server, php_gearman, background, priority):
    worker(php_gearman, any_server, background, 0, "rev")
    wait_workers(any_server, b"rev")
    assert client(php_gearman, any_server, "do", priority, "rev", "hello") == [b"RESULT olleh"]


def test_unique_reaches_the_worker(any_server, php_gearman, background):
    w = worker(php_gearman, any_server, background, 1, "uniq")
    assert client(php_gearman, any_server, "do", "normal", "uniq", "x", "php-unique") == [b"RESULT php-unique"]
    status, out, err = w.wait()
    assert (status, out) == (0, b"JOB uniq php-unique x\n"), err


def test_callbacks_data_status_warning_complete(any_server, php_gearman, background):
    worker(php_gearman, any_server, background, 0, "chatty")
    wait_workers(any_server, b"chatty")
    assert client(php_gearman, any_server, "events", "chatty", "hi") == [
        b"DATA chunk", b"STATUS 1/2", b"WARNING careful", b"STATUS 2/2", b"COMPLETE done:hi"]


def test_fail_and_exception(any_server, php_gearman, background):
    worker(php_gearman, any_server, background, 0, "fail", "exc")
    wait_workers(any_server, b"exc")
    assert client(php_gearman, any_server, "events", "fail", "z") == [b"FAIL"]
    # php-gearman asks for exceptions (OPTION_REQ) on its own
    assert client(php_gearman, any_server, "events", "exc", "y") == [b"EXCEPTION oops:y"]


@pytest.mark.parametrize("priority", ["normal", "high", "low"])
def test_background_and_job_status(any_server, php_gearman, priority):
    (line,) = client(php_gearman, any_server, "bg", priority, "phpbg", "x", f"u-{priority}")
    assert line.startswith(b"HANDLE ")
    handle = line.split()[1]
    assert client(php_gearman, any_server, "status", handle.decode()) == [b"KNOWN 1 RUNNING 0 NUM 0 DEN 0"]
    with connect(any_server) as admin:
        counts = {b"high": b"1\t0\t0", b"normal": b"0\t1\t0", b"low": b"0\t0\t1"}[priority.encode()]
        assert admin.admin("prioritystatus") == [b"phpbg\t" + counts + b"\t0\n", b".\n"]
        assert admin.admin("show unique jobs") == [b"u-" + priority.encode() + b"\n", b".\n"]


def test_many_tasks(any_server, php_gearman, background):
    worker(php_gearman, any_server, background, 0, "rev")
    wait_workers(any_server, b"rev")
    assert client(php_gearman, any_server, "many", "100", "rev") == [b"COMPLETED 100 WRONG 0 FAILED 0"]


def test_php_client_with_perl_worker(any_server, php_gearman, perl_gearman, background):
    background([perl_gearman, str(PERL_DIR / "worker.pl"), any_server.address, "0", "rev"])
    wait_workers(any_server, b"rev")
    assert client(php_gearman, any_server, "do", "normal", "rev", "php to perl") == [b"RESULT lrep ot php"]
