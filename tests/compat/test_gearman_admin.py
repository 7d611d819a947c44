"""GearmanAdminClient (geartrain.compat.gearman) against our server and the C gearmand."""

from __future__ import annotations

import pytest

import geartrain.compat.gearman as gearman
from tests.conftest import free_port

from ._support import worker_thread


def test_status_workers_version_pid(any_server):
    client = gearman.GearmanClient([any_server.address])
    for i in range(3):
        client.submit_job("queued_task", str(i), background=True, poll_timeout=10)
    admin = gearman.GearmanAdminClient([any_server.address])
    status = {row["task"]: row for row in admin.get_status()}
    assert status["queued_task"] == {"task": "queued_task", "queued": 3, "running": 0, "workers": 0}
    assert admin.get_version().startswith("OK ")
    assert admin.get_pid() == f"OK {any_server.proc.pid}"
    with worker_thread([any_server], {"other": lambda w, j: ""}):
        workers = admin.get_workers()
        status = {row["task"]: row for row in admin.get_status()}
    assert any(w["tasks"] == ("other",) for w in workers)
    assert status["other"]["workers"] == 1
    assert all(set(w) == {"file_descriptor", "ip", "client_id", "tasks"} for w in workers)


def test_ping_and_maxqueue(any_server):
    admin = gearman.GearmanAdminClient([any_server.address])
    assert isinstance(admin.ping_server(), float)
    assert admin.send_maxqueue("anything", 10) == "OK"


def test_server_error_line_raises_protocol_error(any_server):
    admin = gearman.GearmanAdminClient([any_server.address])
    with pytest.raises(gearman.ProtocolError):
        admin.cancel_job("H:no-such-host:424242")
    assert admin.ping_server() >= 0  # the connection is still usable afterwards


def test_shutdown(any_server):
    admin = gearman.GearmanAdminClient([any_server.address])
    if any_server.kind == "gearmand":
        # gearmand removed the shutdown command in 2016 (signals only): its ERR line raises ProtocolError.
        with pytest.raises(gearman.ProtocolError, match="UNKNOWN_COMMAND"):
            admin.send_shutdown()
        assert any_server.proc.poll() is None
        return
    assert admin.send_shutdown(graceful=False) is None
    any_server.proc.wait(10)
    with pytest.raises(gearman.ServerUnavailable):
        gearman.GearmanAdminClient([any_server.address]).get_status()


def test_admin_client_takes_exactly_one_server():
    with pytest.raises(ValueError):
        gearman.GearmanAdminClient([f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"])
    with pytest.raises(gearman.ServerUnavailable):
        gearman.GearmanAdminClient([f"127.0.0.1:{free_port()}"]).get_version()
