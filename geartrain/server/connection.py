"""One asyncio Protocol per client or worker socket: bytes in -> codec -> state; state's output -> one write.

The hot path is ``data_received``: feed the parser, call ``dispatch[ptype](peer, args)`` for each
packet (a list lookup, no Task, no logging), then ask the pump (pump.py) to flush. It flushes every
connection that got output this loop turn with one ``transport.write`` each (write coalescing). A
connection whose peer does not read has its reading paused while our write buffer is above the
high-water mark, and is closed if that buffer passes a hard limit. The connections of one listener
share a ``Port``: the state, the pump, the limits and the counters (no connection sees the server).

Hostile or broken peers (see docs/reliability.md): with ``--ssl`` the TLS handshake runs here
(``loop.start_tls``, bounded by ``--partial-timeout``, a failure is logged); a connection that holds
part of a packet for ``--partial-timeout`` seconds (slowloris) or, with ``--idle-timeout``, sends
nothing while it neither works nor waits for a job, is sent an ERROR and closed by the listener's
sweep (``sweep``, over the ``Port``'s connections); unusable packets are logged (the first few per
connection). With an ACL, the connection's rules are chosen once here, from its address and client
certificate. The bytes of an unfinished packet are held against the server-wide
``--max-buffered-input`` (budget.py): a connection whose packet would pass it gets an ERROR and is
closed (logged).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from dataclasses import dataclass, field
from time import time
from typing import Any

from ..protocol.codec import FATAL, PARSE_ERROR, Parser, error_packet
from ..protocol.packets import DEFAULT_MAX_PACKET_SIZE, REQ, ErrorCode
from .budget import InputBudget
from .jobs import Peer
from .pump import Pump
from .state import State
from .tls import TLSTransport, describe_tls_error

log = logging.getLogger("geartrain.server")


@dataclass(eq=False)
class Port:
    """What the connections of one Gearman listener share: the state, the pump, the limits, the counters."""

    state: State
    pump: Pump
    budget: InputBudget = field(default_factory=lambda: InputBudget(0))  # --max-buffered-input
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
    max_connections: int = 0  # 0: no limit
    ssl_context: ssl.SSLContext | None = None  # --ssl
    acl: Any = None  # acl.ACL (--acl): each connection's rules come from it; None: open
    keepalive: tuple[int, int, int] | None = None  # (idle, interval, count), -1 each for the system default
    write_high: int = 4 * 1024 * 1024  # unwritten output past this pauses reading from the peer
    write_hard_limit: int = 256 * 1024 * 1024  # and past this closes it
    partial_timeout: float = 0.0  # seconds a partial packet or TLS handshake may take; 0: no limit
    idle_timeout: float = 0.0  # seconds a connection that neither works nor waits may stay silent; 0: no limit
    bytes_in: int = 0
    connections: set[Connection] = field(default_factory=set)  # the open ones, for the sweep

    def tune(self, sock: socket.socket) -> None:
        """An accepted socket's options: TCP_NODELAY, and keepalive when asked for."""
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        if self.keepalive is not None:
            set_keepalive(sock, *self.keepalive)


class Connection(asyncio.Protocol):
    """The socket side of one Peer."""

    __slots__ = ("port", "state", "dispatch", "life", "pump", "parser", "peer", "transport", "paused", "closing",
                 "rules", "cert_name", "last_rx", "partial_since", "errors", "tls", "budget", "held")

    def __init__(self, port: Port) -> None:
        self.port = port
        self.state = port.state
        self.dispatch = port.state.dispatch
        self.life = port.state.life  # whose clock (now) each read sets
        self.pump = port.pump
        self.parser = Parser(REQ, max_packet_size=port.max_packet_size)
        self.peer: Peer | None = None
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.closing = False
        self.rules = None  # acl.Rules of this peer when an ACL is configured
        self.cert_name: str | None = None  # the TLS client certificate's common name
        self.last_rx = 0.0  # when bytes last arrived (for --idle-timeout)
        self.partial_since = 0.0  # when the unfinished packet in the parser began (for --partial-timeout)
        self.errors = 0  # unusable packets seen (only the first few are logged)
        self.tls: TLSTransport | None = None  # with --ssl: the TLS session over the socket
        self.budget = port.budget  # --max-buffered-input, shared by every connection
        self.held = 0  # bytes of the unfinished packet taken from it

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        self.transport = transport
        port = self.port
        sock = transport.get_extra_info("socket")
        peername = transport.get_extra_info("peername")
        host = peername[0] if isinstance(peername, tuple) else "-"
        if port.max_connections and len(self.state.peers) >= port.max_connections:
            log.warning("refusing connection from %s: --max-connections %d reached", host, port.max_connections)
            self.closing = True
            transport.abort()
            return
        if port.ssl_context is not None:
            # the TLS session wraps the socket; until its handshake is done no packet is read, and the
            # sweep treats the handshake as an unfinished packet (--partial-timeout)
            transport = self.transport = self.tls = TLSTransport(transport, port.ssl_context)  # type: ignore[arg-type]
        fd = -1
        if sock is not None:
            fd = sock.fileno()
            port.tune(sock)
        transport.set_write_buffer_limits(high=port.write_high, low=port.write_high // 4)
        peer = self.state.connect(fd, host)
        peer.transport = transport
        peer.extra = self
        self.peer = peer
        port.connections.add(self)
        self.last_rx = self.state.now or time()
        if self.tls is not None:
            self.partial_since = self.last_rx
        elif port.acl is not None:
            self.rules = port.acl.rules_for(None, host)

    def tls_received(self, tls: TLSTransport, data: bytes) -> bytes | None:
        """Decrypt DATA; None when there is nothing (more) to parse: handshake under way, failed, or TLS closed."""
        peer = self.peer
        try:
            data = tls.receive(data)
        except (ssl.SSLError, OSError) as exc:
            log.warning("TLS %s with %s fd %d failed: %s", "session" if tls.established else "handshake",
                        peer.host if peer else "-", peer.fd if peer else -1, describe_tls_error(exc))
            self.closing = True
            tls.abort()
            return None
        if tls.fresh:  # the handshake just finished: who is it?
            tls.fresh = False
            self.partial_since = 0.0
            self.cert_name = tls.peer_name()
            if self.port.acl is not None and peer is not None:
                self.rules = self.port.acl.rules_for(self.cert_name, peer.host)
        if data is None:  # close_notify
            tls.close()
            return None
        return data or None

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or self.closing:
            return
        self.port.bytes_in += len(data)
        if self.tls is not None:
            data = self.tls_received(self.tls, data)  # type: ignore[assignment]
            if data is None:
                return
        parser = self.parser
        events = parser.feed(data)
        state = self.state
        now = self.life.now = time()
        self.last_rx = now
        buffered = parser.buffered
        if buffered:
            if events or not self.partial_since:
                self.partial_since = now
        elif self.partial_since:
            self.partial_since = 0.0
        dispatch = self.dispatch
        try:
            for ptype, args in events:
                if ptype >= 0:
                    dispatch[ptype](peer, args)
                elif ptype == PARSE_ERROR:
                    state.send(peer, error_packet(*args))
                    self.parse_error(args)
                elif ptype == FATAL:
                    state.send(peer, error_packet(*args))
                    log.warning("closing connection fd %d from %s: %s", peer.fd, peer.host, args[1].decode())
                    peer.close_after = True
                    self.closing = True
                    break
        except Exception:
            # a bug must cost one connection, not the server
            log.exception("internal error on connection fd %d from %s; closing it", peer.fd, peer.host)
            state.send(peer, error_packet(b"SERVER_ERROR", b"Internal server error"))
            peer.close_after = True
            self.closing = True
        buffered = parser.buffered  # what is left unparsed after the handlers ran (a FATAL clears it)
        if buffered != self.held and not self.hold(buffered):
            self.refuse_input()
        pump = self.pump
        if not pump.scheduled:
            pump.schedule()

    def hold(self, n: int) -> bool:
        """The unfinished packet is now N bytes: take or give back the difference (False: over the cap)."""
        more = n - self.held
        if more > 0 and not self.budget.take(more):
            return False
        if more < 0:
            self.budget.give(-more)
        self.held = n
        return True

    def refuse_input(self) -> None:
        """Its unfinished packet would pass --max-buffered-input: an ERROR, a log line, a close."""
        peer = self.peer
        why = self.budget.refusal()
        self.budget.give(self.held)
        self.held = 0
        if peer is None or self.closing:
            return
        log.warning("closing connection fd %d from %s: %s", peer.fd, peer.host, why)
        self.closing = True
        self.state.send(peer, error_packet(ErrorCode.MEMORY_ALLOCATION_FAILURE, why.encode()))
        peer.close_after = True

    def parse_error(self, args: tuple[bytes, ...]) -> None:
        """Log an unusable packet; only the first few of a connection, so a flood cannot flood the log."""
        self.errors += 1
        n = self.errors
        if n <= 3:
            peer = self.peer
            log.warning("unusable packet from %s fd %d: %s %s%s", peer.host if peer else "-", peer.fd if peer else -1,
                        args[0].decode(errors="replace"), args[1].decode(errors="replace"),
                        "; further ones on this connection are not logged" if n == 3 else "")

    def expire(self, why: str, code: bytes, text: bytes) -> None:
        """Close this connection from the listener's sweep (slowloris, idle): an ERROR, a log line, a close."""
        peer = self.peer
        if peer is None or self.closing:
            return
        log.warning("closing connection fd %d from %s: %s", peer.fd, peer.host, why)
        self.closing = True
        self.state.send(peer, error_packet(code, text))
        peer.close_after = True
        self.pump.schedule()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.port.connections.discard(self)
        if self.held:
            self.budget.give(self.held)
            self.held = 0
        peer = self.peer
        if peer is None:
            return
        self.peer = None
        if not self.closing and (self.parser.buffered or (self.tls is not None and not self.tls.established)):
            # it went away mid-packet or mid-handshake (a reset, a half-open peer finally noticed): say so
            what = "its TLS handshake unfinished" if self.tls is not None and not self.tls.established else \
                f"{self.parser.buffered} bytes of an unfinished packet"
            log.info("connection fd %d from %s closed with %s%s", peer.fd, peer.host, what,
                     f" ({exc})" if exc else "")
        self.state.disconnect(peer)
        self.pump.schedule()

    # backpressure: our output to this peer is piling up
    def pause_writing(self) -> None:
        if self.transport is None:
            return
        size = self.transport.get_write_buffer_size()
        if size > self.port.write_hard_limit:
            log.warning("closing connection fd %d from %s: it does not read its replies (%d bytes waiting)",
                        self.peer.fd if self.peer else -1, self.peer.host if self.peer else "-", size)
            self.transport.abort()
            return
        if not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def check_hard_limit(self) -> None:
        """Called after a write while paused: close a peer that never reads."""
        transport = self.transport
        if transport is not None and transport.get_write_buffer_size() > self.port.write_hard_limit:
            self.pause_writing()


def sweep(port: Port, now: float) -> None:
    """Close PORT's connections stuck mid-packet past --partial-timeout (slowloris) and, with --idle-timeout,
    the silent ones that neither work nor wait for a job."""
    partial, idle = port.partial_timeout, port.idle_timeout
    for conn in list(port.connections):
        peer = conn.peer
        if peer is None or conn.closing:
            continue
        if partial and conn.partial_since and not conn.paused and now - conn.partial_since > partial:
            tls = conn.tls
            what = "a TLS handshake not finished" if tls is not None and not tls.established else \
                f"{conn.parser.buffered} bytes of an unfinished packet"
            conn.expire(f"no whole packet within --partial-timeout {partial:g}s ({what})", b"TIMEOUT",
                        b"Partial packet not completed in time")
        elif idle and now - conn.last_rx > idle and not (
                peer.as_worker.abilities or peer.as_client.waiting or peer.as_worker.jobs):
            conn.expire(f"silent for --idle-timeout {idle:g}s and neither working nor waiting for a job",
                        b"TIMEOUT", b"Idle connection closed")


def set_keepalive(sock: socket.socket, idle: int, interval: int, count: int) -> None:
    """Turn on TCP keepalive with gearmand's knobs (-1 = system default)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if idle > 0 and hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        if interval > 0 and hasattr(socket, "TCP_KEEPINTVL"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
        if count > 0 and hasattr(socket, "TCP_KEEPCNT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
    except OSError as exc:
        log.warning("could not set keepalive: %s", exc)
