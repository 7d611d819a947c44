"""The cap on unfinished input held over all connections (``--max-buffered-input``), with real processes.

Partial Gearman packets count against it (HTTP bodies too: test_http_limits.py): a connection whose
packet would pass it gets an ERROR naming the option and is closed (logged), so many clients that
each send most of a big packet cannot grow the server without end. Memory is read from
/proc/PID/status while they hold their bytes; the counts and sizes are fixed, and every read is
bounded by a timeout.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from geartrain.protocol.packets import REQ, T
from tests.conftest import Server, start_geartrain
from tests.interop.wire import wait_for

MIB = 1024 * 1024


def rss(pid: int) -> int:
    """Resident memory of PID in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


#: clients holding unfinished input at once, and how much each
CLIENTS = 16
EACH = 8 * MIB
CAP = 16 * MIB
#: what the server may grow by while they hold it: the cap, one client's bytes in flight, and slack
#: for the interpreter (without the cap it grows by about CLIENTS * EACH)
BOUND = CAP + EACH + 32 * MIB


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[Server]:
    server = start_geartrain(tmp_path, "--max-buffered-input", "16M")
    try:
        yield server
    finally:
        server.stop()


def send_quietly(sock: socket.socket, data: bytes) -> bool:
    """Send DATA; False if the server closed or reset the connection meanwhile."""
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def gearman_head(size: int) -> bytes:
    return REQ + struct.pack(">II", T.SUBMIT_JOB_BG, size)


def test_partial_gearman_packets_of_many_clients_stay_within_the_input_cap(capped: Server) -> None:
    server = capped
    base = rss(server.proc.pid)
    socks = []
    args = b"fn\x00u\x00"
    try:
        for _ in range(CLIENTS):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            socks.append(sock)
            send_quietly(sock, gearman_head(len(args) + EACH) + args + b"p" * (EACH - 1))
        peak = rss(server.proc.pid)
        errors = []
        for sock in socks:
            sock.settimeout(0.5)
            try:
                got = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                continue
            if got:
                errors.append(got)
        assert peak - base < BOUND, f"server grew by {(peak - base) / MIB:.0f} MiB holding {CLIENTS} packets"
        assert errors, "no connection was refused"
        for got in errors:
            assert got[4:8] == struct.pack(">I", T.ERROR)
            assert b"--max-buffered-input" in got
        assert "--max-buffered-input" in server.log.read_text()
    finally:
        for sock in socks:
            sock.close()
    # the bytes of closed connections are free again: a whole packet of that size is served
    def whole_packet_goes_through() -> bool:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(gearman_head(len(args) + EACH) + args + b"p" * EACH)
            sock.settimeout(10)
            reply = sock.recv(65536)
            return reply[4:8] == struct.pack(">I", T.JOB_CREATED)

    assert wait_for(whole_packet_goes_through, timeout=10)
