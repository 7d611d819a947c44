"""Our client with other Gearman workers: libgearman's `gearman -w` and Perl's Gearman::Worker."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from geartrain.adminclient import AdminClient
from geartrain.client import Client, Task
from geartrain.errors import JobFailed

pytestmark = pytest.mark.interop

PERL_WORKER = r"""
use strict; use warnings;
use Gearman::Worker;
my $w = Gearman::Worker->new(job_servers => [$ARGV[0]]);
$w->register_function(perl_rev => sub { return scalar reverse $_[0]->arg; });
$w->register_function(perl_die => sub { die "perl worker says no\n"; });
$w->register_function(perl_progress => sub { $_[0]->set_status(1, 2); return "done " . $_[0]->arg; });
$w->work while 1;
"""


def wait_workers(address: str, function: str, n: int = 1, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = AdminClient(address).status().get(function)
        if st and st.workers >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"no worker registered {function}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_our_client_with_libgearman_command_workers(any_server):
    from tests.conftest import need_binary

    gearman = need_binary("gearman")
    base = [gearman, "-h", any_server.host, "-p", str(any_server.port), "-w"]
    workers = [subprocess.Popen([*base, "-f", "c_upper", "--", "tr", "a-z", "A-Z"]),
               subprocess.Popen([*base, "-f", "c_upper", "--", "tr", "a-z", "A-Z"]),
               subprocess.Popen([*base, "-f", "c_false", "--", "false"])]
    try:
        wait_workers(any_server.address, "c_upper", 2)
        wait_workers(any_server.address, "c_false")
        with Client(any_server.address, timeout=20) as client:
            assert client.submit("c_upper", b"hello") == b"HELLO"
            tasks = client.run([Task("c_upper", f"job {i}") for i in range(40)])
            assert [t.result for t in tasks] == [f"JOB {i}".encode() for i in range(40)]
            with pytest.raises(JobFailed):
                client.submit("c_false", b"x")
    finally:
        for w in workers:
            stop(w)


def test_our_client_with_perl_workers(any_server, tmp_path):
    from tests.conftest import need_peer

    perl = shutil.which("perl")
    need_peer("perl", bool(perl))
    ok = subprocess.run([perl, "-MGearman::Worker", "-e", "1"], capture_output=True).returncode == 0
    need_peer("perl Gearman::Worker", ok)
    script = tmp_path / "worker.pl"
    script.write_text(PERL_WORKER)
    workers = [subprocess.Popen([perl, str(script), any_server.address]) for _ in range(2)]
    try:
        wait_workers(any_server.address, "perl_rev", 2)
        with Client(any_server.address, timeout=20) as client:
            assert client.submit("perl_rev", b"hello") == b"olleh"
            tasks = client.run([Task("perl_rev", f"{i:03d}", unique=f"p{i}") for i in range(30)])
            assert [t.result for t in tasks] == [f"{i:03d}"[::-1].encode() for i in range(30)]
            with pytest.raises(JobFailed):
                client.submit("perl_die", b"x")
            statuses = []
            job = client.submit_job("perl_progress", b"x",
                                    on_status=lambda j, n, d: statuses.append((n, d)))
            assert job.result(20) == b"done x"
            assert statuses == [(1, 2)]
    finally:
        for w in workers:
            stop(w)
