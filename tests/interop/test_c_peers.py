"""A small C client and worker built against libgearman (c/gt_client.c, c/gt_worker.c) on both servers."""

from __future__ import annotations

import re

import pytest

from .conftest import run, wait_workers
from .wire import connect, status_table, wait_for

pytestmark = pytest.mark.interop

CHATTY = [b"DATA 6 chunk1", b"STATUS 1/2", b"WARNING 4 warn", b"DATA 6 chunk2", b"STATUS 2/2",
          b"COMPLETE 10 done:hello"]


def client(c_programs, server, *args: str) -> tuple[int, list[bytes], bytes]:
    out = run([str(c_programs["gt_client"]), "-p", str(server.port), *args], timeout=25)
    return out.returncode, out.stdout.splitlines(), out.stderr


def start_worker(c_programs, server, background, *args: str):
    return background([str(c_programs["gt_worker"]), "-p", str(server.port), *args])


def created(line: bytes) -> bytes:
    m = re.fullmatch(rb"CREATED (\S+)", line)
    assert m, line
    return m.group(1)


@pytest.mark.parametrize("mode", ["fg", "high", "low"])
def test_foreground_job_events(any_server, c_programs, background, mode):
    start_worker(c_programs, any_server, background)
    wait_workers(any_server, b"chatty")
    rc, lines, err = client(c_programs, any_server, "submit", mode, "chatty", "-", "hello")
    assert rc == 0, err
    created(lines[0])
    assert lines[1:] == CHATTY


def test_background_priorities_reach_the_worker_in_order(any_server, c_programs, background):
    handles = []
    for mode, data in (("lowbg", "low"), ("bg", "normal"), ("highbg", "high"), ("bg", "normal2")):
        rc, lines, err = client(c_programs, any_server, "submit", mode, "record", "-", data)
        assert rc == 0, err
        handles.append(created(lines[0]))
        assert lines[1:] == []
    assert len(set(handles)) == 4
    worker = start_worker(c_programs, any_server, background, "-c", "4", "-f", "record")
    status, out, err = worker.wait()
    assert status == 0, err
    assert [ln.split(b" ")[-1] for ln in out.splitlines()] == [b"high", b"normal", b"normal2", b"low"]


def test_job_status_of_a_background_job(any_server, c_programs, background):
    rc, lines, _ = client(c_programs, any_server, "submit", "bg", "sleepy", "-", "1500")
    handle = created(lines[0]).decode()
    assert client(c_programs, any_server, "status", handle)[1] == [b"KNOWN 1 RUNNING 0 NUM 0 DEN 0"]
    start_worker(c_programs, any_server, background, "-f", "sleepy")
    assert wait_for(lambda: client(c_programs, any_server, "status", handle)[1]
                    == [b"KNOWN 1 RUNNING 1 NUM 0 DEN 0"], timeout=10, every=0.1)
    assert wait_for(lambda: client(c_programs, any_server, "status", handle)[1]
                    == [b"KNOWN 0 RUNNING 0 NUM 0 DEN 0"], timeout=10, every=0.1)


def test_work_fail(any_server, c_programs, background):
    start_worker(c_programs, any_server, background, "-f", "fail")
    wait_workers(any_server, b"fail")
    rc, lines, err = client(c_programs, any_server, "submit", "fg", "fail", "-", "x")
    assert rc == 0, err
    assert lines[1:] == [b"FAIL"]


def test_exception_with_exceptions_option(any_server, c_programs, background):
    start_worker(c_programs, any_server, background, "-f", "exc")
    wait_workers(any_server, b"exc")
    rc, lines, err = client(c_programs, any_server, "-e", "submit", "fg", "exc", "-", "x")
    assert rc == 0, err
    assert lines[1:] == [b"EXCEPTION 6 oops:x"]


def test_unique_reaches_the_worker(any_server, c_programs, background):
    worker = start_worker(c_programs, any_server, background, "-c", "1", "-f", "uniq")
    rc, lines, err = client(c_programs, any_server, "submit", "fg", "uniq", "my-unique-id", "x")
    assert rc == 0, err
    assert lines[1:] == [b"COMPLETE 12 my-unique-id"]
    assert worker.wait()[1] == b"JOB uniq my-unique-id x\n"


def test_two_hundred_tasks_in_flight(any_server, c_programs, background):
    workers = [start_worker(c_programs, any_server, background, "-f", "rev") for _ in range(2)]
    wait_workers(any_server, b"rev", count=2)
    rc, lines, err = client(c_programs, any_server, "many", "200", "rev")
    assert rc == 0, err
    assert lines == [b"COMPLETED 200 WRONG 0 FAILED 0"]
    with connect(any_server) as admin:
        assert status_table(admin)[b"rev"] == (0, 0, 2)
    done = sum(out.count(b"JOB rev ") for out in (w.stop()[0] for w in workers))
    assert done == 200


def test_c_worker_serves_the_gearman_cli(any_server, c_programs, background, gearman_bin):
    start_worker(c_programs, any_server, background, "-i", "c-worker")
    wait_workers(any_server, b"rev")
    out = run([gearman_bin, "-h", any_server.host, "-p", str(any_server.port), "-f", "rev", "stressed"])
    assert (out.returncode, out.stdout) == (0, b"desserts")
    with connect(any_server) as admin:
        assert any(b" c-worker : " in ln for ln in admin.admin("workers"))


def test_three_hundred_background_jobs_then_drained_by_priority(any_server, c_programs, background):
    rc, lines, err = client(c_programs, any_server, "manybg", "300", "record")
    assert rc == 0, err
    assert lines == [b"CREATED 300 DISTINCT 300"]
    with connect(any_server) as admin:
        assert admin.admin("prioritystatus") == [b"record\t100\t100\t100\t0\n", b".\n"]
    worker = start_worker(c_programs, any_server, background, "-c", "300", "-f", "record")
    status, out, err = worker.wait()
    assert status == 0, err
    got = [ln.split(b" ")[-1] for ln in out.splitlines()]
    # every HIGH job, then every NORMAL, then every LOW
    for k, p in enumerate(b"hnl"):
        part = got[100 * k:100 * (k + 1)]
        assert sorted(part) == [b"%c-%04d" % (p, i) for i in range(300) if i % 3 == k]
        # FIFO within a priority: in submission order, which libgearman 1.1.20 makes the reverse of add_task's
        assert part in (sorted(part), sorted(part, reverse=True)), part
