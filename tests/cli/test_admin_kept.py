"""`geartrain admin failed|policy|policies` against a running geartrain server, and what they say of the C
gearmand, which has none of these commands."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from geartrain.adminclient import AdminClient
from geartrain.client import Client
from geartrain.protocol.packets import T
from tests.cli.util import InProcess
from tests.conftest import Server, free_port, start_gearmand, start_geartrain
from tests.interop.wire import Wire
from tests.server.test_http import grab


@pytest.fixture
def cli(capsysbinary, monkeypatch):
    run = InProcess(capsysbinary, monkeypatch)
    return lambda *args, **env: run(*args, COLUMNS="200", **env)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = start_geartrain(tmp_path, "--policy", "flaky", "tries=2 delay=0", "--failed-max-payload", "8")
    yield s
    s.stop()


def bury(server: Server, worker: Wire, data: bytes, text: bytes) -> None:
    with Client(server.address) as client:
        client.submit_background("flaky", data)
    for _ in range(2):
        worker.send(T.WORK_EXCEPTION, grab(worker)[0], text)


def test_failed_list_show_requeue_discard(server: Server, cli) -> None:
    at = ("--servers", server.address)
    with Wire(server.host, server.port) as worker:
        worker.send(T.CAN_DO, b"flaky")
        bury(server, worker, b"short", b"ValueError: first")
        bury(server, worker, b"much too long", b"KeyError: second")
        out = cli("admin", *at, "failed")
        assert out.returncode == 0, out.stderr
        text = out.stdout.decode()
        assert "ValueError: first" in text and "KeyError: second" in text and "flaky" in text
        assert cli("admin", *at, "failed", "list", "flaky").stdout == out.stdout
        assert "ValueError" not in cli("admin", *at, "failed", "list", "other").stdout.decode()
        first, cut = AdminClient(server.address).failed()
        out = cli("admin", *at, "failed", "show", str(first.id))
        text = out.stdout.decode()
        assert out.returncode == 0 and "short" in text and text.count("exception: ValueError: first") == 2
        assert "only 8 kept" in cli("admin", *at, "failed", "show", str(cut.id)).stdout.decode()
        out = cli("admin", *at, "--raw", "failed", "show", str(first.id))
        assert out.stdout.startswith(b"id\t%d\n" % first.id) and out.stdout.endswith(b".\n")
        out = cli("admin", *at, "failed", "requeue", str(first.id))
        assert out.returncode == 0 and "1" in out.stdout.decode()
        handle, _, data = grab(worker)
        assert data == b"short"
        worker.send(T.WORK_COMPLETE, handle, b"")
        out = cli("admin", *at, "failed", "requeue", str(cut.id))  # its payload was cut: refused
        assert out.returncode == 1 and b"kept only part of their payload" in out.stderr
        out = cli("admin", *at, "failed", "discard", "all")
        assert out.returncode == 0 and AdminClient(server.address).failed() == []
    assert cli("admin", *at, "failed", "show", "x").returncode == 2  # usage
    assert cli("admin", *at, "failed", "bogus").returncode == 2
    out = cli("admin", "--servers", f"{server.address},127.0.0.1:{free_port()}", "failed", "requeue", "3")
    assert out.returncode == 2 and b"ids are per server" in out.stderr


def test_policy_and_policies(server: Server, cli) -> None:
    at = ("--servers", server.address)
    out = cli("admin", *at, "policy", "resize", "tries=4", "delay=1.5", "backoff=exponential")
    assert out.returncode == 0, out.stderr
    out = cli("admin", *at, "--raw", "policy", "resize")
    assert out.stdout == b"OK tries=4 delay=1.5 backoff=exponential\n"
    out = cli("admin", *at, "policies")
    text = out.stdout.decode()
    assert "resize" in text and "tries=4 delay=1.5 backoff=exponential" in text and "tries=2 delay=0" in text
    out = cli("admin", *at, "policy", "resize", "tries=4", "dealy=1")
    assert out.returncode == 1 and b"unknown policy word 'dealy=1'" in out.stderr
    assert cli("admin", *at, "policy", "resize", "none").returncode == 0
    assert cli("admin", *at, "--raw", "policy", "resize").stdout == b"OK none\n"
    assert cli("admin", *at, "policy").returncode == 2


def test_the_c_gearmand_does_not_know_them(tmp_path: Path, cli) -> None:
    gearmand = start_gearmand(tmp_path)
    try:
        for command in (("failed",), ("policies",), ("policy", "f")):
            out = cli("admin", "--servers", gearmand.address, *command)
            assert out.returncode == 1 and b"UNKNOWN_COMMAND" in out.stderr, out
    finally:
        gearmand.stop()
