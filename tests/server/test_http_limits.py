"""Limits on what HTTP clients may make the server hold (issue #13 item 7), with real processes.

A submission is refused by the ACL, or for its size, before its body is read; HTTP has its own body
limit (``--http-max-body``); the head must come within ``--http-header-timeout``; and HTTP bodies
still arriving count against ``--max-buffered-input`` with the partial Gearman packets
(test_input_cap.py): beyond it a body is refused with 503, so the server's memory stays bounded while
many clients hold big unfinished bodies (memory read from /proc/PID/status).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, free_port, start_geartrain, wait_port
from tests.interop.wire import wait_for
from tests.server.test_http import Web
from tests.server.test_input_cap import BOUND, CAP, CLIENTS, EACH, MIB, rss, send_quietly


def read_reply(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """What the server sent until it closed or went quiet for TIMEOUT seconds (a reset ends it too)."""
    sock.settimeout(timeout)
    reply = b""
    try:
        while chunk := sock.recv(65536):
            reply += chunk
            if b"\r\n\r\n" in reply and _complete(reply):
                break
    except (TimeoutError, ConnectionResetError):
        pass
    return reply


def _complete(reply: bytes) -> bool:
    head, _, body = reply.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


def status_of(reply: bytes) -> int:
    assert reply.startswith(b"HTTP/1.1 "), reply[:200]
    return int(reply[9:12])


def body_of(reply: bytes) -> dict:
    return json.loads(reply.partition(b"\r\n\r\n")[2])


def post_head(port: int, path: str, length: int, extra: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {length}\r\n".encode()
                 + extra + b"\r\n")
    return sock


def test_acl_refuses_a_submission_before_its_body_is_read(tmp_path: Path) -> None:
    acl = tmp_path / "acl.toml"
    acl.write_text('[default]\nsubmit = ["open.*"]\n')
    port = free_port()
    server = start_geartrain(tmp_path, "--http-port", str(port), "--acl", str(acl))
    try:
        wait_port(port, server.proc)
        # the head announces 8 MiB that never come: the answer cannot wait for them
        with post_head(port, "/secret", 8 * MIB) as sock:
            reply = read_reply(sock)
        assert status_of(reply) == 403, reply[:300]
        assert "submit not allowed" in body_of(reply)["error"]
        assert "may not submit" in server.log.read_text()
        # an allowed function still waits for its body and runs
        status, headers, _ = Web(server, port).request("POST", "/open.x", b"data", {"X-Gearman-Background": "true"})
        assert status == 200 and headers["x-gearman-command"] == "JOB_CREATED"
    finally:
        server.stop()


def test_http_has_its_own_body_limit_checked_before_the_body(tmp_path: Path) -> None:
    port = free_port()
    server = start_geartrain(tmp_path, "--http-port", str(port), "--http-max-body", "1K")
    try:
        wait_port(port, server.proc)
        web = Web(server, port)
        status, _, body = web.request("POST", "/limited", b"x" * 1025, {"X-Gearman-Background": "true"})
        assert status == 413 and "--http-max-body" in json.loads(body)["error"]
        assert web.request("POST", "/limited", b"x" * 1024, {"X-Gearman-Background": "true"})[0] == 200
        with post_head(port, "/limited", 64 * MIB) as sock:  # refused on its Content-Length alone
            reply = read_reply(sock)
        assert status_of(reply) == 413, reply[:300]
        # the Gearman port keeps --max-packet-size (64M by default)
        assert web.json("GET", "/api/server")[0] == 200
    finally:
        server.stop()


def test_a_slow_request_head_is_closed_after_the_header_timeout(tmp_path: Path) -> None:
    port = free_port()
    server = start_geartrain(tmp_path, "--http-port", str(port), "--http-header-timeout", "1")
    try:
        wait_port(port, server.proc)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /api/server HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            sock.settimeout(10)
            try:
                assert sock.recv(65536) == b""  # closed, without an answer to half a head
            except ConnectionResetError:
                pass
        # a connection that sends its head in time is answered
        assert Web(server, port).request("GET", "/api/server")[0] == 200
    finally:
        server.stop()


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[tuple[Server, int]]:
    port = free_port()
    server = start_geartrain(tmp_path, "--http-port", str(port), "--max-buffered-input", "16M",
                             "--http-max-body", "16M")
    try:
        wait_port(port, server.proc)
        yield server, port
    finally:
        server.stop()


def test_http_bodies_held_by_many_clients_stay_within_the_input_cap(capped: tuple[Server, int]) -> None:
    server, port = capped
    web = Web(server, port)
    assert web.request("GET", "/api/server")[0] == 200
    base = rss(server.proc.pid)
    socks, refused = [], []
    try:
        for i in range(CLIENTS):
            sock = post_head(port, f"/big{i}", EACH, b"X-Gearman-Background: true\r\n")
            socks.append(sock)
            if not send_quietly(sock, b"b" * (EACH - 1)):  # all but the last byte: the body stays unfinished
                refused.append(sock)
        peak = rss(server.proc.pid)
        answered = []
        for sock in socks:
            sock.settimeout(0.5)
            try:
                first = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                continue
            if first:
                answered.append(first + read_reply(sock, 2))
        assert peak - base < BOUND, f"server grew by {(peak - base) / MIB:.0f} MiB holding {CLIENTS} bodies"
        assert answered, "no submission was refused"
        for reply in answered:
            assert status_of(reply) == 503
            assert "--max-buffered-input" in body_of(reply)["error"]
        assert len(answered) <= CLIENTS - CAP // EACH + 1  # those within the cap are still being read
        assert web.request("GET", "/api/server")[0] == 200
    finally:
        for sock in socks:
            sock.close()
    # once those clients are gone their bytes are free again: a big body goes through
    assert wait_for(lambda: web.request("POST", "/after", b"a" * EACH, {"X-Gearman-Background": "true"})[0] == 200,
                    timeout=10)
