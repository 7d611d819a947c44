"""One connection to one job server, for clients and workers.

``Link`` owns a server address and its connection: it connects (plain TCP or TLS, given an
``ssl.SSLContext``), hands every packet the sans-I/O ``Parser(expect=RES)`` yields to a handler,
coalesces writes (all packets queued in one loop turn, or while handling one read, leave in one ``write``),
can wait a moment before its next read when its owner asks (``after_read``), and tracks a
backoff so a server that is down is skipped until its retry time. Reconnecting is the owner's
call: ``connect()`` again once ``retry_in()`` is zero.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import ssl as _ssl
import time
from collections.abc import Callable, Sequence

from .protocol import Parser
from .protocol.packets import RES

DEFAULT_PORT = 4730
DEFAULT_SERVER = f"127.0.0.1:{DEFAULT_PORT}"

PacketHandler = Callable[[int, tuple], None]
LostHandler = Callable[["Link", BaseException | None], None]


def parse_port(text: str | int) -> int:
    """A TCP port number, 1-65535; ValueError (saying so) for anything else."""
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"bad port {text!r}: not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"bad port {port}: ports are 1-65535")
    return port


def parse_address(spec: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or ``v6`` -> (host, port); ValueError for a bad port."""
    spec = spec.strip()
    if not spec:
        raise ValueError("empty server address")
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        return host, parse_port(rest[1:]) if rest.startswith(":") else default_port
    if spec.count(":") == 1:
        host, port = spec.split(":")
        return host or "127.0.0.1", parse_port(port)
    return spec, default_port


def error_text(exc: BaseException | None) -> str:
    """Why a connection failed or ended, in words ("connection refused"), without Python's errno decoration."""
    if exc is None:
        return "closed by the server"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, OSError) and exc.errno and exc.errno > 0:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def normalize_servers(servers: str | Sequence[str] | None, env: str | None = None) -> list[str]:
    """A server list ("h1:p,h2" or a sequence) as normalized ``host:port`` names, without duplicates.

    With ``servers`` None, the environment variable ENV (e.g. GEARMAN_SERVER) is used if given and
    set, else 127.0.0.1:4730.
    """
    if servers is None and env:
        servers = os.environ.get(env) or None
    if servers is None:
        servers = [DEFAULT_SERVER]
    if isinstance(servers, str):
        servers = [servers]
    out: list[str] = []
    for item in servers:
        for part in item.split(","):
            if part.strip():
                out.append(format_address(*parse_address(part)))
    if not out:
        raise ValueError("no job server given")
    return list(dict.fromkeys(out))


class Backoff:
    """Exponential backoff with jitter: 0.1 s, 0.2 s, ... up to ``maximum``."""

    __slots__ = ("initial", "maximum", "factor", "failures")

    def __init__(self, initial: float = 0.1, maximum: float = 10.0, factor: float = 2.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.failures = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * self.factor ** self.failures)
        self.failures += 1
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.failures = 0


class _Protocol(asyncio.Protocol):
    """The asyncio face of a Link: bytes in -> parser -> handler; coalesced bytes out."""

    __slots__ = ("link", "parser", "transport", "handler")

    def __init__(self, link: Link) -> None:
        self.link = link
        self.parser = Parser(RES, text=False, max_packet_size=link.max_packet_size)
        self.transport: asyncio.Transport | None = None
        self.handler = link.handler

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        link = self.link
        fast = link.fast
        if fast is not None and not self.parser._chunks and fast(data):
            return  # the owner handled the read whole (and wrote its replies)
        handler = self.handler
        link._rx = True  # packets queued while handling these go out in one write at the end, not a loop turn later
        try:
            for ptype, args in self.parser.feed(data):
                if ptype < 0:
                    if ptype == -2:  # FATAL: the stream is unusable
                        self.transport.close()  # type: ignore[union-attr]
                        return
                    continue
                handler(ptype, args)
        finally:
            link._rx = False
        if link._buf:
            link._flush()
        if link.after_read is not None:
            delay = link.after_read()
            if delay > 0:  # the owner wants the next replies in one batch: read again only after DELAY
                self.transport.pause_reading()  # type: ignore[union-attr]
                link._loop.call_later(delay, self._resume)  # type: ignore[union-attr]

    def _resume(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.link._lost(self, exc)


class Link:
    """One job server: its address, its connection (when up), and its backoff (when down)."""

    __slots__ = ("address", "host", "port", "ssl", "connect_timeout", "handler", "on_lost", "backoff",
                 "retry_at", "max_packet_size", "_proto", "_buf", "_flush_scheduled", "_connecting", "_loop",
                 "last_error", "on_up", "_rx", "after_read", "fast", "up")

    def __init__(
        self,
        address: str,
        handler: PacketHandler,
        on_lost: LostHandler,
        *,
        ssl: _ssl.SSLContext | None = None,
        connect_timeout: float = 5.0,
        backoff: Backoff | None = None,
        max_packet_size: int = 1 << 30,
        on_up: Callable[[Link], None] | None = None,
    ) -> None:
        self.address = address
        self.host, self.port = parse_address(address)
        self.ssl = ssl
        self.connect_timeout = connect_timeout
        self.handler = handler
        self.on_lost = on_lost
        self.backoff = backoff or Backoff()
        self.retry_at = 0.0
        self.max_packet_size = max_packet_size
        self._proto: _Protocol | None = None
        #: connected (a plain attribute, not a property: hot paths read it for every job)
        self.up = False
        self._buf: list[bytes] = []
        self._flush_scheduled = False
        self._connecting: asyncio.Future | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.last_error: BaseException | None = None
        self.on_up = on_up
        self._rx = False
        #: called after each read's packets were handled (and the replies to them written); returns how long
        #: to wait before reading again (0: at once). AsyncClient.run sets it to batch its replies.
        self.after_read: Callable[[], float] | None = None
        #: called first with each read's bytes while nothing is buffered; returns True when it handled them all
        #: (every packet, its replies written), False to leave them to the parser and handler. The worker's fast
        #: path for a read that is one JOB_ASSIGN_UNIQ.
        self.fast: Callable[[bytes], bool] | None = None

    def __repr__(self) -> str:
        return f"<Link {self.address} {'up' if self.up else 'down'}>"

    @property
    def connecting(self) -> bool:
        """A connect() is under way."""
        return self._connecting is not None

    def retry_in(self) -> float:
        """Seconds until this server may be tried again (0: now)."""
        return max(0.0, self.retry_at - time.monotonic())

    async def connect(self) -> None:
        """Connect (once; concurrent callers share the attempt). Raises OSError and starts a backoff on failure."""
        if self._proto is not None:
            return
        if self._connecting is not None:
            await asyncio.shield(self._connecting)
            return
        loop = self._loop = asyncio.get_running_loop()
        fut = self._connecting = loop.create_future()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Protocol(self), self.host, self.port, ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                ),
                self.connect_timeout,
            )
        except (TimeoutError, OSError) as exc:
            self.last_error = exc
            self.retry_at = time.monotonic() + self.backoff.next_delay()
            self._connecting = None
            err = exc if isinstance(exc, OSError) else OSError(f"connect to {self.address} timed out")
            fut.set_exception(err)
            fut.exception()  # mark retrieved
            raise err from None
        except BaseException as exc:
            self._connecting = None
            fut.cancel()
            raise exc
        sock = proto.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self._proto = proto
        self.up = True
        self._buf = []
        self._flush_scheduled = False
        self.backoff.reset()
        self._connecting = None
        if self.on_up is not None:
            self.on_up(self)  # first packets (options, registrations) go out before anybody else's
        fut.set_result(None)

    def send(self, data: bytes) -> None:
        """Queue DATA; everything queued in this loop turn is written together."""
        self._buf.append(data)
        if not self._flush_scheduled and not self._rx:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)  # type: ignore[union-attr]

    def send_now(self, data: bytes) -> None:
        """Write DATA (and anything queued before it) right away."""
        self._buf.append(data)
        self._flush()

    def flush(self) -> None:
        """Write what is queued now, not at the end of the loop turn."""
        self._flush()

    def write_direct(self, data: bytes) -> bool:
        """Write DATA now, with one system call and no copy, if nothing is queued before it (True); else leave it
        (False: the caller sends it the ordinary way). For a hot path that answers a read with one packet."""
        proto = self._proto
        if self._buf or proto is None or proto.transport is None:
            return False
        proto.transport.write(data)
        return True

    def batch(self, fn: Callable[..., object], *args: object) -> None:
        """Call FN(*ARGS); the packets it sends, after those already queued, leave in one write when it returns."""
        self._rx = True
        try:
            fn(*args)
        finally:
            self._rx = False
        self._flush()

    def _flush(self) -> None:
        self._flush_scheduled = False
        buf = self._buf
        if not buf:
            return
        self._buf = []
        proto = self._proto
        if proto is None or proto.transport is None:
            return
        proto.transport.write(buf[0] if len(buf) == 1 else b"".join(buf))

    def _lost(self, proto: _Protocol, exc: BaseException | None) -> None:
        if proto is not self._proto:
            return
        self._proto = None
        self.up = False
        self._buf = []
        self.last_error = exc
        self.retry_at = time.monotonic() + self.backoff.next_delay()
        self.on_lost(self, exc)

    def close(self) -> None:
        """Flush and close; the owner's on_lost is called as for any drop."""
        proto = self._proto
        if proto is not None and proto.transport is not None:
            self._flush()
            proto.transport.close()

    def abort(self) -> None:
        proto = self._proto
        if proto is not None and proto.transport is not None:
            proto.transport.abort()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where it is installed, else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(coro: object) -> object:
    """asyncio.run on uvloop where available."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)  # type: ignore[arg-type]
    return uvloop.run(coro)  # type: ignore[arg-type]
