"""Raw-socket Gearman sessions for interop tests: send packets and admin lines, read replies.

A ``Wire`` is one TCP connection to a job server. It encodes with geartrain's own ``pack_req`` and
decodes replies with geartrain's ``Parser(expect=RES)`` (never a second codec), and it can also read
the admin protocol's text replies (single lines, or listings ending in ``.\\n``). Every read is
bounded by a timeout, so a server that stays silent fails the test instead of hanging it.
"""

from __future__ import annotations

import socket
import time
from types import TracebackType

from geartrain.protocol import RES, Parser, T, pack_req
from geartrain.protocol.codec import FATAL, PARSE_ERROR

Packet = tuple[int, tuple[bytes, ...]]

#: How long a read waits for a reply that must come.
REPLY_TIMEOUT = 10.0


def raw_packet(ptype: int, payload: bytes) -> bytes:
    """A request packet of PTYPE around PAYLOAD as given: unlike pack_req, no NULs are added between fields."""
    return b"\0REQ" + int(ptype).to_bytes(4, "big") + len(payload).to_bytes(4, "big") + payload


class WireError(AssertionError):
    """The server did not answer as a Gearman server must (timeout, garbage, closed)."""


class Wire:
    """One connection to a job server, speaking binary packets and admin text."""

    def __init__(self, host: str, port: int, timeout: float = REPLY_TIMEOUT) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""  # bytes received, not yet consumed

    # -- lifecycle --------------------------------------------------------------------------------
    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- sending ----------------------------------------------------------------------------------
    def send(self, ptype: int, *args: bytes) -> None:
        self.sock.sendall(pack_req(ptype, *args))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def text(self, line: bytes | str) -> None:
        """Send one admin command line (``\\r\\n`` appended, as gearadmin does)."""
        if isinstance(line, str):
            line = line.encode()
        self.sock.sendall(line + b"\r\n")

    # -- receiving --------------------------------------------------------------------------------
    def _fill(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise WireError(f"timed out; have {self._buf!r}")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise WireError(f"timed out waiting for a reply; have {self._buf!r}") from None
        if not chunk:
            raise WireError(f"connection closed by the server; have {self._buf!r}")
        self._buf += chunk

    def packet(self, timeout: float | None = None) -> Packet:
        """Read exactly one binary reply packet."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if len(self._buf) >= 12:
                if self._buf[0] != 0:
                    raise WireError(f"expected a binary packet, got text {self._buf[:80]!r}")
                size = int.from_bytes(self._buf[8:12], "big")
                if len(self._buf) >= 12 + size:
                    raw, self._buf = self._buf[:12 + size], self._buf[12 + size:]
                    events = Parser(expect=RES).feed(raw)
                    if len(events) != 1 or events[0][0] in (PARSE_ERROR, FATAL):
                        raise WireError(f"unparseable reply {raw!r}: {events}")
                    return events[0]
            self._fill(deadline)

    def expect(self, ptype: int, timeout: float | None = None) -> tuple[bytes, ...]:
        """Read one packet, which must be of type PTYPE; return its arguments."""
        got, args = self.packet(timeout)
        if got != ptype:
            raise WireError(f"expected {T(ptype).name}, got {_name(got)} {args!r}")
        return args

    def line(self, timeout: float | None = None) -> bytes:
        """Read one admin text line, including its line ending."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                if self._buf[:1] == b"\0":
                    raise WireError(f"expected text, got a binary packet {self._buf[:40]!r}")
                out, self._buf = self._buf[:nl + 1], self._buf[nl + 1:]
                return out
            self._fill(deadline)

    def listing(self, timeout: float | None = None) -> list[bytes]:
        """Read admin text lines up to and including the terminating ``.\\n``."""
        out = []
        while True:
            ln = self.line(timeout)
            out.append(ln)
            if ln == b".\n":
                return out

    def quiet(self, wait: float = 0.3) -> bytes:
        """Wait briefly and return whatever arrived unasked (b"" when the server stayed silent)."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            self._buf += chunk
        out, self._buf = self._buf, b""
        return out

    # -- conveniences -----------------------------------------------------------------------------
    def admin(self, line: bytes | str) -> list[bytes]:
        """Send an admin command whose reply is a listing; return the listing's lines."""
        self.text(line)
        return self.listing()

    def admin_line(self, line: bytes | str) -> bytes:
        """Send an admin command whose reply is one line; return it."""
        self.text(line)
        return self.line()

    def submit(self, ptype: int, func: bytes, unique: bytes, data: bytes) -> bytes:
        """Submit a job; return its handle (the reply must be JOB_CREATED)."""
        self.send(ptype, func, unique, data)
        return self.expect(T.JOB_CREATED)[0]


def _name(ptype: int) -> str:
    try:
        return T(ptype).name
    except ValueError:
        return str(ptype)


def connect(server: object, timeout: float = REPLY_TIMEOUT) -> Wire:
    """A Wire to a tests.conftest.Server."""
    return Wire(server.host, server.port, timeout)  # type: ignore[attr-defined]


def noops(workers: list[Wire], expect: int, timeout: float = 5.0, settle: float = 0.3) -> list[int]:
    """NOOPs received per worker: wait until EXPECT have come in all (or TIMEOUT), then SETTLE more."""
    noop = b"\0RES" + int(T.NOOP).to_bytes(4, "big") + bytes(4)
    got = [b""] * len(workers)
    deadline = time.monotonic() + timeout
    while sum(g.count(noop) for g in got) < expect and time.monotonic() < deadline:
        got = [g + w.quiet(0.02) for g, w in zip(got, workers, strict=True)]
    got = [g + w.quiet(settle) for g, w in zip(got, workers, strict=True)]
    for g in got:
        assert g.replace(noop, b"") == b"", f"not only NOOPs: {g!r}"
    return [g.count(noop) for g in got]


def status_table(wire: Wire) -> dict[bytes, tuple[int, int, int]]:
    """The admin ``status`` listing as {function: (total, running, workers)}."""
    out = {}
    for ln in wire.admin("status")[:-1]:
        func, total, running, workers = ln.rstrip(b"\n").split(b"\t")
        out[func] = (int(total), int(running), int(workers))
    return out


def wait_for(pred: object, timeout: float = 10.0, every: float = 0.05) -> bool:
    """Poll PRED() until it is true or TIMEOUT passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()  # type: ignore[operator]
        if value or time.monotonic() >= deadline:
            return bool(value)
        time.sleep(every)
