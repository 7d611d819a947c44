"""The HTTP listener (``--http-port``): gearmand's HTTP job submission, a JSON API, /metrics and the dashboard.

It runs in the server's event loop next to the Gearman listener: one asyncio Protocol per HTTP
connection, with h11 (python-hyper's sans-I/O HTTP/1.1) as the parser. Routes:

- ``POST /FUNCTION`` (or PUT), body = payload: submits a job as gearmand's HTTP plugin does. Headers
  ``X-Gearman-Unique`` (default ``-``: identical payloads coalesce, as gearmand), ``X-Gearman-Background:
  true`` (reply at once with the job handle) and ``X-Gearman-Priority: high|low``. A foreground
  request waits for the result: 200 with the worker's WORK_DATA chunks and WORK_COMPLETE data as the
  body; 500 on WORK_FAIL or WORK_EXCEPTION. Replies carry ``X-Gearman-Job-Handle`` and
  ``X-Gearman-Command`` like gearmand's. The path is percent-decoded, so any bytes can name a function.
- ``GET /api/...`` (and ``DELETE /api/jobs/{handle}``): JSON views of the state (server/api.py),
  described by docs/openapi.json, which is served at ``/openapi.json``.
- ``GET /metrics``: Prometheus text format (server/metrics.py).
- ``GET /``: the dashboard (static files in server/dashboard/).

A submitting HTTP connection is a Peer of the job logic like any Gearman client: the replies the
state queues for it are Gearman packets, which ``PacketSink`` parses back and turns into the HTTP
response. Limits: request head at most ``max_header`` bytes (431), body at most the server's max
packet size (413), a whole request within ``idle_timeout`` seconds of the connection going idle.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from http import HTTPStatus
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote_to_bytes, urlsplit

import h11

from .. import __version__
from ..protocol.codec import Parser
from ..protocol.packets import HIGH, LOW, MAX_UNIQUE_SIZE, NORMAL, RES, ErrorCode, T
from . import api, metrics

if TYPE_CHECKING:
    from .app import Server
    from .jobs import Peer

log = logging.getLogger("geartrain.http")

MAX_HEADER = 16 * 1024
IDLE_TIMEOUT = 60.0
SERVER_HEADER = f"geartrain/{__version__}".encode()
JSON = b"application/json"
#: paths (after the leading /) that are ours, not function names, for POST and PUT
RESERVED_PREFIXES = (b"api/", b"dashboard/")
RESERVED_PATHS = (b"api", b"metrics", b"openapi.json", b"dashboard")
CONTENT_TYPES = {".html": b"text/html; charset=utf-8", ".js": b"text/javascript; charset=utf-8",
                 ".css": b"text/css; charset=utf-8", ".json": JSON, ".svg": b"image/svg+xml"}
#: the dashboard's files load nothing from elsewhere and may not be framed by another site
STATIC_HEADERS = [(b"cache-control", b"no-cache"), (b"x-content-type-options", b"nosniff"),
                  (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'"),
                  (b"referrer-policy", b"no-referrer")]
#: Gearman ERROR codes -> HTTP status for a refused submission
ERROR_STATUS = {ErrorCode.QUEUE_ERROR: 503, ErrorCode.PERMISSION_DENIED: 403}


class Static:
    """The dashboard's files (package data), read once."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, bytes]] = {}
        root = resources.files(__package__).joinpath("dashboard")
        for entry in root.iterdir():
            name = entry.name
            suffix = name[name.rfind("."):] if "." in name else ""
            if entry.is_file() and suffix in CONTENT_TYPES:
                self.files[name] = (entry.read_bytes(), CONTENT_TYPES[suffix])

    def get(self, name: str) -> tuple[bytes, bytes] | None:
        return self.files.get(name)


class HttpListener:
    """The HTTP socket of one Server and its counters."""

    def __init__(self, server: Server, host: str, port: int, *, max_header: int = MAX_HEADER,
                 idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.server = server
        self.host = host
        self.port = port
        self.max_header = max_header
        self.max_body = server.max_packet_size
        self.idle_timeout = idle_timeout
        self.bytes_in = 0
        self.bytes_out = 0
        self.responses: dict[int, int] = {}
        self.connections: set[HttpConnection] = set()
        self.registry = metrics.make_registry()
        self.static = Static()
        self.listener: asyncio.AbstractServer | None = None
        self.sockets: list[Any] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.listener = await loop.create_server(lambda: HttpConnection(self), host=self.host or None,
                                                     port=self.port, reuse_address=True)
        except OSError as exc:
            raise OSError(exc.errno, f"HTTP listener on {self.host}:{self.port}: {exc.strerror}") from exc
        self.sockets = list(self.listener.sockets)
        where = ", ".join(f"http://{h}:{p}/" for h, p in self.addresses)
        log.log(25, "HTTP listening on %s (dashboard, /api, /metrics, POST /FUNCTION)", where)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [s.getsockname()[:2] for s in self.sockets]

    def stop_accepting(self) -> None:
        """Graceful shutdown: no new HTTP connections; requests under way are still answered."""
        if self.listener is not None:
            self.listener.close()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()


class Pending:
    """A submitted job an HTTP request waits for."""

    __slots__ = ("background", "handle", "chunks")

    def __init__(self, background: bool) -> None:
        self.background = background
        self.handle = b""
        self.chunks: list[bytes] = []


class PacketSink:
    """Stands in for a Peer's transport: the Gearman replies the state writes become the HTTP response."""

    __slots__ = ("conn", "parser")

    def __init__(self, conn: HttpConnection) -> None:
        self.conn = conn
        self.parser = Parser(RES, text=False)

    def write(self, data: bytes) -> None:
        conn = self.conn
        conn.server.bytes_out -= len(data)  # not Gearman traffic: the flush counted it as such
        for ptype, args in self.parser.feed(data):
            conn.on_packet(ptype, args)

    def close(self) -> None:
        if self.conn.transport is not None:
            self.conn.transport.close()

    def get_write_buffer_size(self) -> int:
        return 0


class HttpConnection(asyncio.Protocol):
    """One HTTP/1.1 connection: keep-alive, one request at a time."""

    def __init__(self, listener: HttpListener) -> None:
        self.listener = listener
        self.server = listener.server
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=listener.max_header)
        self.transport: asyncio.Transport | None = None
        self.host = "-"
        self.peer: Peer | None = None
        self.paused = False  # read by the server's flush, as for a Gearman connection
        self.request: h11.Request | None = None
        self.body: list[bytes] = []
        self.body_size = 0
        self.busy = False  # a request is being answered (waiting for a job's result)
        self.rejected = False  # answered before its body ended: ignore the rest and close
        self.pending: Pending | None = None
        self.started = 0.0
        self.processing = False
        self.timer: asyncio.TimerHandle | None = None
        self.backlog = 0  # bytes received while busy
        self.rules: Any = None  # acl.Rules of this connection when an ACL is configured (read by the ACL hooks)
        self.cert_name: str | None = None  # no client certificates on the HTTP port

    # ------------------------------------------------------------------ asyncio side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        self.transport = transport  # type: ignore[assignment]
        peername = transport.get_extra_info("peername")
        self.host = peername[0] if isinstance(peername, tuple) else "-"
        acl = self.server.acl
        if acl is not None:
            self.rules = acl.rules_for(None, self.host)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:  # a response is one write: send it now, not after the ACK of the last one (Nagle)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.listener.connections.add(self)
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        listener = self.listener
        listener.bytes_in += len(data)
        if self.rejected:
            return
        if self.busy:
            # pipelined requests wait in h11's buffer while a job runs: bound what a client may pile up
            self.backlog += len(data)
            if self.backlog > listener.max_header + listener.max_body and self.transport is not None:
                log.warning("closing HTTP connection from %s: %d bytes sent while its request was running",
                            self.host, self.backlog)
                self.transport.close()
                return
        self.h11.receive_data(data)
        self._process()

    def eof_received(self) -> bool | None:
        if not self.rejected:
            self.h11.receive_data(b"")
            self._process()
        # A client that half-closed after a background submission still gets the handle (it comes within
        # a loop turn, or a store commit). Waiting for a foreground job, the end of its input is taken as
        # the client leaving (it cannot be told from a full close): the connection closes, and a job still
        # queued for nobody else is dropped, as for a Gearman client.
        pending = self.pending
        return True if self.busy and (pending is None or pending.background) else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.connections.discard(self)
        self.transport = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        peer = self.peer
        if peer is not None:
            self.peer = None
            self.server.state.disconnect(peer)
            self.server.schedule_flush()

    def _arm_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.listener.idle_timeout, self._idle)

    def _idle(self) -> None:
        self.timer = None
        if not self.busy and self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------------ HTTP side

    def _process(self) -> None:
        if self.processing:
            return
        self.processing = True
        try:
            conn = self.h11
            while not self.busy and self.transport is not None and not self.rejected:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as exc:
                    self._protocol_error(exc)
                    return
                if event is h11.NEED_DATA:
                    return
                if event is h11.PAUSED:
                    if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                        conn.start_next_cycle()
                        continue
                    return
                if isinstance(event, h11.Request):
                    self._begin(event)
                elif isinstance(event, h11.Data):
                    self.body_size += len(event.data)
                    if self.body_size > self.listener.max_body:
                        self._too_large()
                        return
                    self.body.append(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    if self.timer is not None:
                        self.timer.cancel()
                        self.timer = None
                    self.busy = True
                    self._handle()
                elif isinstance(event, h11.ConnectionClosed):
                    if self.transport is not None:
                        self.transport.close()
                    return
        finally:
            self.processing = False

    def _begin(self, request: h11.Request) -> None:
        self.request = request
        self.body = []
        self.body_size = 0
        self.started = time.monotonic()
        # h11 bounds only a head still incomplete; one that arrived whole is measured here
        size = len(request.method) + len(request.target) + sum(len(n) + len(v) + 4 for n, v in request.headers)
        if size > self.listener.max_header:
            self.busy = True
            self.rejected = True
            self.error(431, f"request head larger than {self.listener.max_header} bytes", close=True)
            return
        for name, value in request.headers:
            if name == b"content-length" and value.isdigit() and int(value) > self.listener.max_body:
                self._too_large()
                return

    def _too_large(self) -> None:
        self.busy = True
        self.rejected = True
        self.error(413, f"request body larger than the server's max packet size ({self.listener.max_body} bytes)",
                   close=True)

    def _protocol_error(self, exc: h11.RemoteProtocolError) -> None:
        status = exc.error_status_hint or 400
        if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            message = "request head too large" if status == 431 else f"bad request: {exc}"
            if self.h11.our_state is h11.IDLE:
                self.request = None
            self.busy = True
            self.rejected = True
            self.error(status, message, close=True)
        elif self.transport is not None:
            self.transport.close()

    def _handle(self) -> None:
        request = self.request
        assert request is not None
        method = request.method.upper()
        path, _, query = request.target.partition(b"?")
        if not path.startswith(b"/"):
            self.error(400, "the request target must be a path")
            return
        rest = path.lstrip(b"/")
        try:
            if method in (b"POST", b"PUT", b"DELETE") and self._cross_origin(request):
                self.error(403, "cross-origin request refused: a web page of another site may not submit or cancel "
                           "jobs (send no Origin header, or one matching Host)")
            elif method in (b"POST", b"PUT"):
                if rest in RESERVED_PATHS or rest.startswith(RESERVED_PREFIXES):
                    self.error(405, f"{method.decode()} {path.decode(errors='replace')} is not a job submission: "
                               "these paths are the server's own", allow=self._allowed(rest))
                else:
                    self._submit(unquote_to_bytes(rest))
            elif method in (b"GET", b"HEAD"):
                self._get(rest, query)
            elif method == b"DELETE":
                self._delete(rest)
            else:
                self.error(405, f"method {method.decode(errors='replace')} not allowed", allow=self._allowed(rest))
        except api.ApiError as exc:
            self.error(exc.status, exc.message)
        except Exception:
            log.exception("HTTP %s %s failed", method.decode(errors="replace"), path.decode(errors="replace"))
            if self.h11.our_state is h11.SEND_RESPONSE:
                self.error(500, "internal error (logged)", close=True)

    @staticmethod
    def _cross_origin(request: h11.Request) -> bool:
        """A browser sending a request on behalf of a page of another origin (CSRF): its Origin header
        names another host than the one it sent the request to. Tools (curl, clients) send no Origin."""
        origin = host = None
        for name, value in request.headers:
            if name == b"origin":
                origin = value
            elif name == b"host":
                host = value
        if origin is None:
            return False
        if origin == b"null":
            return True
        return urlsplit(origin.decode("ascii", "replace")).netloc.lower() != (host or b"").decode(
            "ascii", "replace").lower()

    @staticmethod
    def _allowed(rest: bytes) -> bytes:
        if rest.startswith(b"api/jobs/"):
            return b"GET, HEAD, DELETE"
        if not rest or rest in RESERVED_PATHS or rest.startswith(RESERVED_PREFIXES):
            return b"GET, HEAD"
        return b"POST, PUT"

    # ------------------------------------------------------------------ GET and DELETE

    def _get(self, rest: bytes, query: bytes) -> None:
        listener = self.listener
        if rest == b"metrics":
            # copy the numbers now; format them in a thread (a big scrape must not hold up the loop)
            snap = metrics.Snapshot(self.server)
            future = asyncio.get_running_loop().run_in_executor(None, metrics.render, snap, listener.registry)
            future.add_done_callback(self._metrics_rendered)
            return
        if rest in (b"", b"dashboard", b"dashboard/"):
            rest = b"dashboard/index.html"
        if rest == b"openapi.json":
            rest = b"dashboard/openapi.json"
        if rest.startswith(b"dashboard/"):
            found = listener.static.get(rest[len(b"dashboard/"):].decode("ascii", "replace"))
            if found is None:
                self.error(404, "no such file")
            else:
                self.respond(200, found[0], found[1], headers=STATIC_HEADERS)
            return
        parts = rest.split(b"/")
        if parts[0] != b"api":
            self.error(404, f"nothing at /{rest.decode(errors='replace')}: submit jobs with POST /FUNCTION; "
                       "the API is under /api/ (see /openapi.json)")
            return
        server = self.server
        args = dict(parse_qsl(query.decode("ascii", "replace"), encoding="utf-8", errors="surrogateescape"))
        route = parts[1:]
        if route == [b"server"]:
            self.json(api.server_info(server, time.time()))
        elif route == [b"functions"]:
            self.json({"functions": api.functions(server)})
        elif len(route) == 2 and route[0] == b"functions" and route[1]:
            self.json(api.function(server, unquote_to_bytes(route[1])))
        elif route == [b"workers"]:
            self.json({"workers": api.workers(server)})
        elif route == [b"jobs"]:
            self.json(api.jobs(server, args))
        elif len(route) == 2 and route[0] == b"jobs" and route[1]:
            self.json(api.job(server, unquote_to_bytes(route[1])))
        else:
            self.error(404, f"no API endpoint /{rest.decode(errors='replace')} (see /openapi.json)")

    def _metrics_rendered(self, future: asyncio.Future) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.error("rendering /metrics failed: %r", exc)
            self.error(500, "internal error (logged)")
        else:
            self.respond(200, future.result(), metrics.CONTENT_TYPE.encode())

    def _delete(self, rest: bytes) -> None:
        parts = rest.split(b"/")
        if len(parts) == 3 and parts[:2] == [b"api", b"jobs"] and parts[2]:
            allowed = self.server.admin.allowed  # the hook admin `cancel job` answers to (--acl, --admin-loopback-only)
            if allowed is not None and not allowed(self._as_peer(), b"cancel"):
                self.error(403, "permission denied: cancelling a job is an admin command this address may not run")
                return
            self.server.state.now = time.time()
            self.json(api.cancel_job(self.server, unquote_to_bytes(parts[2])))
        else:
            self.error(405, "only /api/jobs/{handle} can be deleted (cancels a queued job)", allow=self._allowed(rest))

    def _as_peer(self) -> Peer:
        """This connection as the permission hooks see it: its submitting Peer, or a stand-in with its address."""
        if self.peer is not None:
            return self.peer
        from .jobs import Peer

        transport = self.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        peer = Peer(0, sock.fileno() if sock is not None else -1, self.host)
        peer.extra = self
        return peer

    # ------------------------------------------------------------------ job submission

    def _submit(self, name: bytes) -> None:
        if not name:
            self.error(404, "must give function name in URI")
            return
        request = self.request
        assert request is not None
        unique = b"-"
        background = False
        priority = NORMAL
        for key, value in request.headers:
            if key == b"x-gearman-unique":
                unique = value
            elif key == b"x-gearman-background":
                background = value.lower() == b"true"
            elif key == b"x-gearman-priority":
                value = value.lower()
                priority = HIGH if value == b"high" else LOW if value == b"low" else NORMAL
        if len(unique) > MAX_UNIQUE_SIZE:
            self.error(400, f"X-Gearman-Unique longer than {MAX_UNIQUE_SIZE} bytes")
            return
        data = b"".join(self.body)
        self.body = []
        if len(name) + len(unique) + len(data) + 2 > self.listener.max_body:
            self.error(413, f"job larger than the server's max packet size ({self.listener.max_body} bytes)")
            return
        state = self.server.state
        peer = self.peer
        if peer is None:
            transport = self.transport
            sock = transport.get_extra_info("socket") if transport is not None else None
            peer = self.peer = state.connect(sock.fileno() if sock is not None else -1, self.host)
            peer.transport = PacketSink(self)
            peer.extra = self
        self.pending = Pending(background)
        state.now = time.time()
        state.submit(priority, background, peer, (name, unique, data))
        self.server.schedule_flush()

    def on_packet(self, ptype: int, args: tuple[bytes, ...]) -> None:
        """A Gearman reply the state sent to this connection's Peer."""
        pending = self.pending
        if pending is None:
            return
        if ptype == T.JOB_CREATED:
            pending.handle = args[0]
            if pending.background:
                self._result(200, b"JOB_CREATED", args[0] + b"\n", b"text/plain; charset=utf-8")
        elif ptype == T.WORK_DATA and args[0] == pending.handle:
            pending.chunks.append(args[1])
        elif ptype == T.WORK_COMPLETE and args[0] == pending.handle:
            pending.chunks.append(args[1])
            self._result(200, b"WORK_COMPLETE", b"".join(pending.chunks), b"application/octet-stream")
        elif ptype == T.WORK_FAIL and args[0] == pending.handle:
            self._result(500, b"WORK_FAIL", b"job failed\n", b"text/plain; charset=utf-8")
        elif ptype == T.WORK_EXCEPTION and args[0] == pending.handle:
            self._result(500, b"WORK_EXCEPTION", args[1], b"application/octet-stream")
        elif ptype == T.ERROR:
            self.pending = None
            self.error(ERROR_STATUS.get(args[0], 400), args[1].decode("utf-8", "replace"),
                       headers=[(b"x-gearman-command", b"ERROR"), (b"x-gearman-error", args[0])])

    def _result(self, status: int, command: bytes, body: bytes, content_type: bytes) -> None:
        pending = self.pending
        assert pending is not None
        self.pending = None
        self.respond(status, body, content_type,
                     headers=[(b"x-gearman-job-handle", pending.handle), (b"x-gearman-command", command)])

    # ------------------------------------------------------------------ responses

    def json(self, value: Any, status: int = 200) -> None:
        body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        self.respond(status, body, JSON)

    def error(self, status: int, message: str, *, close: bool = False, allow: bytes | None = None,
              headers: list[tuple[bytes, bytes]] | None = None) -> None:
        extra = list(headers or [])
        if allow is not None:
            extra.append((b"allow", allow))
        body = json.dumps({"error": message, "status": status}, ensure_ascii=False).encode() + b"\n"
        self.respond(status, body, JSON, headers=extra, close=close)

    def respond(self, status: int, body: bytes, content_type: bytes, *,
                headers: list[tuple[bytes, bytes]] | None = None, close: bool = False) -> None:
        transport = self.transport
        conn = self.h11
        if transport is None or conn.our_state not in (h11.SEND_RESPONSE, h11.IDLE):
            self.busy = False
            return
        request = self.request
        head = request is not None and request.method.upper() == b"HEAD"
        fields = [(b"server", SERVER_HEADER), (b"content-type", content_type),
                  (b"content-length", str(len(body)).encode())]
        if headers:
            fields += headers
        if close:
            fields.append((b"connection", b"close"))
        try:
            reason = HTTPStatus(status).phrase.encode()
        except ValueError:
            reason = b""
        try:
            out = conn.send(h11.Response(status_code=status, headers=fields, reason=reason))
            if body and not head:
                out += conn.send(h11.Data(data=body))
            out += conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            log.exception("HTTP response %d could not be sent", status)
            transport.close()
            return
        transport.write(out)
        listener = self.listener
        listener.bytes_out += len(out)
        listener.responses[status] = listener.responses.get(status, 0) + 1
        if log.isEnabledFor(logging.INFO) and request is not None:
            took = (time.monotonic() - self.started) * 1000.0
            method = request.method.decode("ascii", "replace")
            target = request.target.decode("ascii", "replace")
            log.info("%s %s %s %d %d %.1fms", self.host, method, target, status, len(body), took,
                     extra={"client": self.host, "method": method, "target": target, "status": status,
                            "bytes": len(body), "ms": round(took, 3)})
        self.busy = False
        self.backlog = 0
        if close or conn.our_state is h11.MUST_CLOSE or self.rejected:
            transport.close()
            return
        self._arm_timer()
        if not self.processing:
            self._process()
