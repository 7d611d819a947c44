"""GearmanConnection: one non-blocking socket to one server that can reconnect, feeding geartrain's codec.

It owns the byte buffers and nothing else: packets it reads wait in ``inbox`` (as ``(ptype, args)``
events from :class:`geartrain.protocol.codec.Parser`) until the connection manager hands them to the
client, worker or admin logic; packets to send are packed with ``pack_req`` into ``outbox``.
"""

from __future__ import annotations

import collections
import errno
import socket
import time

from ...protocol.codec import FATAL, Event, Parser, pack_req
from ...protocol.packets import RES
from .constants import DEFAULT_GEARMAN_PORT
from .errors import ConnectionError, ProtocolError, ServerUnavailable

_RECV_SIZE = 65536
_RETRY = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)


class GearmanConnection:
    """A connection to one Gearman server. ``connect()`` may be called again after ``close()``."""

    #: After a failed connect, the server is not tried again sooner than this (python-gearman's cooldown).
    connect_cooldown_seconds = 1.0
    #: How long a TCP connect may take.
    connect_timeout = 5.0

    def __init__(self, host: str | None = None, port: int | None = DEFAULT_GEARMAN_PORT, *,
                 text: bool = False) -> None:
        if host is None:
            raise ServerUnavailable("No host specified")
        self.gearman_host = host
        self.gearman_port = port or DEFAULT_GEARMAN_PORT
        self.text = text
        self.allowed_connect_time = 0.0
        self.gearman_socket: socket.socket | None = None
        self.connected = False
        self.state: object = None  # per-connection state of the client/worker/admin using it
        self._reset()

    def _reset(self) -> None:
        self.connected = False
        self.gearman_socket = None
        self.parser = Parser(expect=RES, text=self.text)
        self.outbox = bytearray()
        self.inbox: collections.deque[Event] = collections.deque()
        self.state = None

    def get_address(self) -> tuple[str, int]:
        return self.gearman_host, self.gearman_port

    def fileno(self) -> int:
        if self.gearman_socket is None:
            raise ConnectionError("no socket set")
        return self.gearman_socket.fileno()

    def readable(self) -> bool:
        return self.connected

    def writable(self) -> bool:
        return self.connected and bool(self.outbox)

    def connect(self) -> None:
        """Open the socket; raise ConnectionError on failure or while the cooldown runs."""
        if self.connected:
            raise ConnectionError("connection already established")
        now = time.monotonic()
        if now < self.allowed_connect_time:
            raise ConnectionError(f"{self!r}: attempted to connect before required cooldown")
        self._reset()
        try:
            sock = socket.create_connection((self.gearman_host, self.gearman_port), timeout=self.connect_timeout)
        except OSError as exc:
            # Only a failed attempt starts the cooldown: a connection that broke may be reopened at once.
            self.allowed_connect_time = time.monotonic() + self.connect_cooldown_seconds
            raise ConnectionError(f"{self!r}: {exc}") from exc
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.gearman_socket = sock
        self.connected = True

    def close(self) -> None:
        if self.gearman_socket is not None:
            try:
                self.gearman_socket.close()
            except OSError:
                pass
        self.gearman_socket = None
        self.connected = False

    def send_command(self, ptype: int, *args: bytes) -> None:
        """Queue one binary packet; ``flush()`` or the poll loop writes it."""
        if not self.connected:
            raise ConnectionError(f"{self!r}: not connected")
        self.outbox += pack_req(ptype, *args)

    def send_text(self, line: bytes) -> None:
        """Queue one admin text command line."""
        if not self.connected:
            raise ConnectionError(f"{self!r}: not connected")
        self.outbox += line + b"\n"

    def flush(self) -> None:
        """Write as much of the outbox as the socket takes now; ConnectionError if the socket broke."""
        sock = self.gearman_socket
        if sock is None or not self.outbox:
            return
        try:
            while self.outbox:
                sent = sock.send(self.outbox)
                if sent <= 0:
                    break
                del self.outbox[:sent]
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno in _RETRY:
                return
            raise ConnectionError(f"{self!r}: {exc}") from exc

    def read(self) -> int:
        """Read what the socket has; parse it into ``inbox``; return how many events were added."""
        sock = self.gearman_socket
        if sock is None:
            raise ConnectionError(f"{self!r}: not connected")
        added = 0
        while True:
            try:
                data = sock.recv(_RECV_SIZE)
            except BlockingIOError:
                return added
            except OSError as exc:
                if exc.errno in _RETRY:
                    return added
                raise ConnectionError(f"{self!r}: {exc}") from exc
            if not data:
                raise ConnectionError(f"{self!r}: closed by the server")
            for event in self.parser.feed(data):
                if event[0] == FATAL:
                    raise ProtocolError(f"{self!r}: {event[1][1].decode(errors='replace')}")
                self.inbox.append(event)
                added += 1
            if len(data) < _RECV_SIZE:
                return added

    def __repr__(self) -> str:
        return f"<GearmanConnection {self.gearman_host}:{self.gearman_port} connected={self.connected}>"
