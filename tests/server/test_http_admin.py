"""The HTTP listener answers to the same admin permissions as the text protocol, and a graceful
shutdown closes it too.

`DELETE /api/jobs/{handle}` cancels a job, as admin `cancel job` does, so it passes the same hook
(`--acl` rules, `--admin-loopback-only`): refused, it answers 403 and the job stays.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import socket
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from geartrain.protocol.packets import T
from geartrain.server.acl import admin_hook
from geartrain.server.http import HttpListener, HttpOptions
from geartrain.server.view import ServerView
from tests.conftest import free_port, start_geartrain, wait_port
from tests.server.helpers import Harness
from tests.server.test_serve import Conn

ACL_TEXT = """
[default]
admin = false

[[peer]]
address = "127.0.0.1"
admin = true
"""


def _request(port: int, method: str, path: str, source: str = "127.0.0.1", body: bytes | None = None,
             headers: dict | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_delete_is_refused_where_admin_cancel_is(tmp_path: Path):
    path = tmp_path / "acl.toml"
    path.write_text(ACL_TEXT)
    port = free_port()
    server = start_geartrain(tmp_path, "--acl", str(path), "--http-port", str(port))
    try:
        wait_port(port, server.proc)
        status, body = _request(port, "POST", "/f", body=b"x", headers={"X-Gearman-Background": "true"})
        assert status == 200, body
        handle = body.decode().strip()
        where = f"/api/jobs/{quote(handle, safe='')}"
        status, body = _request(port, "DELETE", where, source="127.0.0.2")  # not an admin address
        assert status == 403, body
        assert json.loads(body)["status"] == 403
        assert _request(port, "GET", where)[0] == 200  # still there
        # the text protocol refuses the same peer the same way
        sock = socket.socket()
        sock.settimeout(5)
        sock.bind(("127.0.0.2", 0))
        sock.connect((server.host, server.port))
        sock.sendall(f"cancel job {handle}\n".encode())
        assert sock.recv(100).startswith(b"ERR PERMISSION_DENIED")
        sock.close()
        status, body = _request(port, "DELETE", where)  # from the admin address
        assert status == 200, body
        assert json.loads(body)["state"] == "cancelled"
        assert _request(port, "GET", where)[0] == 404
        assert "may not run admin command 'cancel'" in server.log.read_text()
    finally:
        server.stop()


def _bare_listener(hook) -> HttpListener:
    """An HttpListener without a socket, over a State driven directly."""
    h = Harness()
    view = ServerView(h.state, lambda: None, 0.0, "memory", lambda: [], lambda: (0, 0), admin_allowed=hook)
    return HttpListener(view, HttpOptions("127.0.0.1", 0))


@pytest.mark.parametrize("host, allowed", [("192.0.2.7", False), ("127.0.0.1", True)])
def test_delete_under_admin_loopback_only(host: str, allowed: bool):
    listener = _bare_listener(admin_hook(True))
    state = listener.view.state
    client = state.connect(5, "127.0.0.1")
    state.dispatch[T.SUBMIT_JOB_BG](client, (b"f", b"", b"x"))
    handle = next(iter(state.jobs))
    answer = asyncio.run(listener.delete(host, "api/jobs/" + handle.decode()))
    assert answer.status == (200 if allowed else 403), answer.body
    assert (handle in state.jobs) is not allowed


def test_graceful_shutdown_closes_the_http_listener(tmp_path: Path):
    port = free_port()
    s = start_geartrain(tmp_path, "--http-port", str(port))
    try:
        wait_port(port, s.proc)
        client, worker = Conn(s), Conn(s)
        client.send(T.SUBMIT_JOB, b"g", b"", b"x")
        h = client.one()[1][0]
        worker.send(T.CAN_DO, b"g").send(T.GRAB_JOB)
        worker.one()
        s.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        refused = False
        while time.monotonic() < deadline and not refused:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                time.sleep(0.05)
            except OSError:
                refused = True
        assert refused  # no new HTTP connections while the running job finishes
        assert s.proc.poll() is None
        worker.send(T.WORK_COMPLETE, h, b"done")
        assert client.one() == ("WORK_COMPLETE", (h, b"done"))
        assert s.proc.wait(10) == 0
    finally:
        s.stop()
