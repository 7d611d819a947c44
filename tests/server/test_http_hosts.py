"""DNS rebinding (issue #13 item 8): a loopback HTTP listener answers only requests whose Host header
names a loopback address, localhost, or a name allowed with --http-allowed-hosts.

A page of evil.example whose name was made to resolve to 127.0.0.1 makes the browser send
``Host: evil.example:PORT`` (and the same Origin): it may neither read the API nor submit jobs.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, start_geartrain, wait_port
from tests.server.test_http import Web


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    port = free_port()
    server = start_geartrain(tmp_path_factory.mktemp("hosts"), "--http-port", str(port), "--http-allowed-hosts",
                             "gear.example,Build.Example")
    try:
        wait_port(port, server.proc)
        yield Web(server, port)
    finally:
        server.stop()


def jobs_of(web: Web, function: str) -> list:
    return web.json("GET", f"/api/jobs?function={function}")[1]["jobs"]  # type: ignore[index]


@pytest.mark.parametrize("path", ["/api/jobs", "/api/server", "/metrics", "/"])
def test_a_foreign_host_cannot_read(web: Web, path: str) -> None:
    status, headers, body = web.request("GET", path, headers={"Host": f"evil.example:{web.port}"})
    assert status == 403, body
    error = json.loads(body)
    assert error["status"] == 403 and "evil.example" in error["error"] and "--http-allowed-hosts" in error["error"]


def test_a_rebound_page_cannot_submit(web: Web) -> None:
    origin = f"evil.example:{web.port}"
    status, _, body = web.request("POST", "/rebind_fn", b"x", {"Host": origin, "Origin": f"http://{origin}",
                                                                 "X-Gearman-Background": "true"})
    assert status == 403, body
    assert jobs_of(web, "rebind_fn") == []
    assert "evil.example" in web.server.log.read_text()


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST", "[::1]:{port}", "127.0.0.2",
                                  "gear.example:{port}", "build.example"])
def test_loopback_names_and_allowed_names_are_served(web: Web, host: str) -> None:
    status, _, body = web.request("GET", "/api/server", headers={"Host": host.format(port=web.port)})
    assert status == 200, body


def test_a_request_without_host_is_served(web: Web) -> None:
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as sock:
        sock.sendall(b"GET /api/server HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 ")


def test_a_listener_on_all_interfaces_checks_no_host_unless_told(tmp_path: Path) -> None:
    port = free_port()
    server = start_geartrain(tmp_path, "--http-port", str(port), "--http-listen", "0.0.0.0")
    try:
        wait_port(port, server.proc)
        web = Web(server, port)
        assert web.request("GET", "/api/server", headers={"Host": "gearman.internal"})[0] == 200
    finally:
        server.stop()
