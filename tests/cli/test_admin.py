"""`geartrain admin` against both servers, and summed over two."""

from __future__ import annotations

import pytest

from geartrain.client import Client
from tests.cli.util import InProcess
from tests.conftest import start_gearmand


@pytest.fixture
def cli(capsysbinary, monkeypatch):
    return InProcess(capsysbinary, monkeypatch)


def test_status_workers_and_tables(any_server, cli):
    with Client(any_server.address) as client:
        job = client.submit_background("queued-fn", b"x", unique="admin-u1")
        client.submit_background("queued-fn", b"y", priority="high")
    out = cli("admin", "--servers", any_server.address, "status")
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.decode().splitlines() if "queued-fn" in line)
    assert row.split("│")[2].strip() == "2"  # queued
    out = cli("admin", "--servers", any_server.address, "--raw", "status")
    assert b"queued-fn\t2\t0\t0\n" in out.stdout and out.stdout.endswith(b".\n")
    out = cli("admin", "--servers", any_server.address, "--raw", "prioritystatus")
    assert b"queued-fn\t1\t1\t0\t0\n" in out.stdout
    out = cli("admin", "--servers", any_server.address, "show-jobs")
    assert job.handle.decode() in out.stdout.decode()
    out = cli("admin", "--servers", any_server.address, "--raw", "show-unique-jobs")
    assert b"admin-u1\n" in out.stdout
    out = cli("admin", "--servers", any_server.address, "cancel-job", job.handle.decode())
    assert out.returncode == 0, out.stdout
    if any_server.kind == "geartrain":  # gearmand only marks a cancelled job and still counts it
        out = cli("admin", "--servers", any_server.address, "--raw", "status")
        assert b"queued-fn\t1\t0\t0\n" in out.stdout
    out = cli("admin", "--servers", any_server.address, "getpid")
    assert str(any_server.proc.pid) in out.stdout.decode()
    out = cli("admin", "--servers", any_server.address, "--raw", "version")
    assert out.stdout.startswith(b"OK ")
    assert cli("admin", "--servers", any_server.address, "workers").returncode == 0
    assert cli("admin", "--servers", any_server.address, "maxqueue", "queued-fn", "5").returncode == 0
    assert cli("admin", "--servers", any_server.address, "create-function", "made-fn").returncode == 0
    assert b"made-fn" in cli("admin", "--servers", any_server.address, "--raw", "status").stdout
    assert cli("admin", "--servers", any_server.address, "drop-function", "made-fn").returncode == 0
    assert cli("admin", "--servers", any_server.address, "cancel-job", "H:none:1").returncode == 1


def test_status_is_summed_over_servers(any_server, tmp_path, cli):
    other = start_gearmand(tmp_path)
    try:
        for address in (any_server.address, other.address):
            with Client(address) as client:
                client.submit_background("summed", b"x")
        out = cli("admin", "status", GEARMAN_SERVER=f"{any_server.address},{other.address}")
        assert out.returncode == 0, out.stderr
        row = next(line for line in out.stdout.decode().splitlines() if "summed" in line)
        assert row.split("│")[2].strip() == "2"
        out = cli("admin", "--servers", f"{any_server.address},{other.address}", "getpid")
        assert str(other.proc.pid) in out.stdout.decode() and str(any_server.proc.pid) in out.stdout.decode()
    finally:
        other.stop()
