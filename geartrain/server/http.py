"""The HTTP listener (``--http-port``): gearmand's HTTP job submission, a JSON API, /metrics and the dashboard.

It runs in the server's event loop next to the Gearman listener, on aiohttp's low-level server
(``aiohttp.web.Server``): aiohttp parses HTTP/1.1 (keep-alive, pipelining, chunked bodies, malformed
requests), bounds the request head and closes connections idle or slow to send their head past
``--http-header-timeout``. Routes:

- ``POST /FUNCTION`` (or PUT), body = payload: submits a job as gearmand's HTTP plugin does (httpjob.py).
  Headers ``X-Gearman-Unique`` (default ``-``: identical payloads coalesce, as gearmand),
  ``X-Gearman-Background: true`` (reply at once with the job handle) and ``X-Gearman-Priority:
  high|low``. A foreground request waits for the result: 200 with the worker's WORK_DATA chunks and
  WORK_COMPLETE data as the body; 500 on WORK_FAIL or WORK_EXCEPTION (the exception's text as the body,
  or as JSON for ``Accept: application/json``). Replies carry ``X-Gearman-Job-Handle`` and
  ``X-Gearman-Command`` like gearmand's. The path is percent-decoded, so any bytes can name a function.
- ``GET /api/...``: JSON views of the state (api.py; a job's outcome, the policies, the failed-job registry
  and the jobs that ended lately: api_kept.py), described by dashboard/openapi.json, which is served at
  ``/openapi.json``. The calls that change something answer to the admin command they stand for (the same
  permission hook, --acl and --admin-loopback-only): ``DELETE /api/jobs/{handle}`` (``cancel``), ``PUT`` and
  ``DELETE /api/functions/{name}/policy`` (``policy``), ``POST /api/failed/{id}/requeue``, ``POST
  /api/failed/requeue``, ``DELETE /api/failed/{id}`` and ``DELETE /api/failed`` (``failed``).
- ``GET /metrics``: Prometheus text format (metrics.py).
- ``GET /healthz``: 200 while the process answers; ``GET /readyz``: 200 when the server is ready for work
  (queue replayed, not stopping, store answering: health.py), else 503 with the reasons in the JSON body.
- ``GET /``: the dashboard (static files in dashboard/).

Before a submission's body is read, its function name, unique and ACL are checked and its declared
length is held against ``--http-max-body`` and the server-wide cap on unfinished input
(``--max-buffered-input``, budget.py); the body is then read as it comes, under both. On a loopback
listener (or with ``--http-allowed-hosts``) only requests whose Host header names this machine are
answered, against DNS rebinding; a POST, PUT or DELETE from a page of another origin is refused (CSRF).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes, urlsplit

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger, AbstractStreamWriter
from aiohttp.http import HttpVersion11, RawRequestMessage
from aiohttp.http_exceptions import LineTooLong
from aiohttp.streams import StreamReader

from .. import __version__
from ..protocol.packets import DEFAULT_MAX_PACKET_SIZE, HIGH, LOW, MAX_UNIQUE_SIZE, NORMAL, ErrorCode
from . import api, api_kept, metrics
from .httpjob import Outcome, Submission, as_peer
from .state import State
from .view import HttpStats, ServerView

log = logging.getLogger("geartrain.http")

DEFAULT_MAX_BODY = 16 * 1024 * 1024
DEFAULT_HEADER_TIMEOUT = 60.0
#: aiohttp's limits on a request head: one line (the request line, or a header), and the number of headers
MAX_LINE = 8190
MAX_HEADERS = 128
#: bytes a client may pipeline while its submission waits, beyond the body limit (about one request head)
PIPELINE_SLACK = 16 * 1024
SERVER_HEADER = f"geartrain/{__version__}"
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
BINARY = "application/octet-stream"
#: paths (after the leading /) that are ours, not function names, for POST and PUT
RESERVED_PREFIXES = ("api/", "dashboard/")
RESERVED_PATHS = ("api", "metrics", "openapi.json", "dashboard", "healthz", "readyz")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".json": JSON, ".svg": "image/svg+xml"}
#: the dashboard's files load nothing from elsewhere and may not be framed by another site
STATIC_HEADERS = {"cache-control": "no-cache", "x-content-type-options": "nosniff",
                  "content-security-policy": "default-src 'self'; frame-ancestors 'none'",
                  "referrer-policy": "no-referrer"}
#: Gearman ERROR codes -> HTTP status for a refused submission
ERROR_STATUS = {ErrorCode.QUEUE_ERROR: 503, ErrorCode.PERMISSION_DENIED: 403}
#: distinct refused Host values logged (a page retrying in a loop must not flood the log)
HOSTS_LOGGED = 64
#: bytes a PUT of a policy may have (a few words)
POLICY_BODY = 4096


async def stored(state: State) -> None:
    """Wait until what the state filed with its durable store so far is committed (at once without one): a change
    of a policy or of the failed-job registry is answered only once a crash cannot lose it. A store that refuses
    it: 503 (the change is made, and the store is tried again)."""
    committer = state.committer
    if committer is None:
        return
    done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
    committer.sync(lambda err: done.done() or done.set_result(err))
    err = await done
    if err is not None:
        raise api.ApiError(503, f"done, but not stored yet (the store is tried again): {err}")


@dataclass
class HttpOptions:
    """The HTTP listener's settings (`geartrain serve --http-*`)."""

    host: str
    port: int
    max_body: int = DEFAULT_MAX_BODY  # --http-max-body (never more than --max-packet-size)
    header_timeout: float = DEFAULT_HEADER_TIMEOUT  # --http-header-timeout
    allowed_hosts: tuple[str, ...] = ()  # --http-allowed-hosts
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE  # a job, name and unique included, fits one packet


class Refused(Exception):
    """A request answered with an error before it was done (its body unread or cut short)."""

    def __init__(self, status: int, message: str, *, close: bool = True,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close
        self.headers = headers


class Static:
    """The dashboard's files (package data), read once."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        root = resources.files(__package__).joinpath("dashboard")
        for entry in root.iterdir():
            name = entry.name
            suffix = name[name.rfind("."):] if "." in name else ""
            if entry.is_file() and suffix in CONTENT_TYPES:
                self.files[name] = (entry.read_bytes(), CONTENT_TYPES[suffix])

    def get(self, name: str) -> tuple[bytes, str] | None:
        return self.files.get(name)


class HostCheck:
    """Which Host headers the listener answers (DNS rebinding), as Jupyter does: a loopback address or
    ``localhost``, and the names the operator allows. Checked when the listener is on loopback addresses
    only, or when names are given; ``*`` turns the check off."""

    def __init__(self, allowed: Iterable[str]) -> None:
        names = {_bare(name) for name in allowed if name.strip()}
        self.off = "*" in names
        self.given = bool(names) and not self.off
        self.names = (names - {"*"}) | {"localhost"}
        self.active = self.given
        self.logged: set[str] = set()

    def listening_on(self, addresses: list[tuple[str, int]]) -> None:
        """Check Host when every listening address is a loopback one (or when names were given)."""
        self.active = not self.off and (self.given or all(_is_loopback(host) for host, _ in addresses))

    def refusal(self, header: str | None) -> str | None:
        """None if a request with this Host header is answered, else why not. No Host: not a browser."""
        if not self.active or header is None:
            return None
        name = _bare(header)
        if name in self.names or _is_loopback(name):
            return None
        if header not in self.logged and len(self.logged) < HOSTS_LOGGED:
            self.logged.add(header)
            log.warning("refusing HTTP requests for Host %r: not a name of this machine (DNS rebinding?); "
                        "allow it with --http-allowed-hosts", header)
        return (f"Host {header!r} is not a name of this server: a loopback listener answers only requests for "
                "localhost or a loopback address (a web page whose own name resolves to this machine, DNS "
                "rebinding, may not use it); allow other names with --http-allowed-hosts")


def _bare(host: str) -> str:
    """A Host header's name, without port, brackets, case or a trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def _cross_origin(request: web.BaseRequest) -> bool:
    """A browser sending a request on behalf of a page of another origin (CSRF): its Origin header names
    another host than the one it sent the request to. Tools (curl, clients) send no Origin."""
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    if origin == "null":
        return True
    return urlsplit(origin).netloc.lower() != request.headers.get("Host", "").lower()


def _allowed(rest: str) -> str:
    parts = rest.split("/")
    if parts[:2] == ["api", "failed"] and parts[-1] == "requeue":
        return "POST"
    if parts[:2] == ["api", "functions"] and len(parts) == 4 and parts[3] == "policy":
        return "GET, HEAD, PUT, DELETE"
    if rest.startswith("api/jobs/") or parts[:2] == ["api", "failed"] and len(parts) <= 3:
        return "GET, HEAD, DELETE"
    if not rest or rest in RESERVED_PATHS or rest.startswith(RESERVED_PREFIXES):
        return "GET, HEAD"
    return "POST, PUT"


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def respond(status: int, body: bytes, content_type: str, *, headers: dict[str, str] | None = None,
            close: bool = False) -> web.Response:
    fields = {"server": SERVER_HEADER, "content-type": content_type}  # lower case on the wire, as before
    if headers:
        fields.update(headers)
    response = web.Response(status=status, body=body, headers=fields)
    if close:
        response.force_close()
    return response


def error(status: int, message: str, *, close: bool = False, headers: dict[str, str] | None = None,
          **fields: Any) -> web.Response:
    """The JSON error every refusal gets: ``{"error": message, "status": status, ...fields}``."""
    body = json.dumps({"error": message, "status": status, **fields}, ensure_ascii=False).encode() + b"\n"
    return respond(status, body, JSON, headers=headers, close=close)


def as_json(value: Any, status: int = 200) -> web.Response:
    return respond(status, json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() + b"\n", JSON)


class HttpProtocol(web.RequestHandler):
    """aiohttp's connection protocol, plus what a job server needs of it: bytes counted, pipelining bounded
    while a submission waits, and a half-closed client still answered unless it left a foreground job."""

    __slots__ = ("listener", "request", "waiting", "backlog", "ended")

    def __init__(self, listener: HttpListener, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.listener = listener
        self.request: web.BaseRequest | None = None  # the request being handled
        self.waiting: Submission | None = None  # the submission a request of this connection waits on
        self.backlog = 0  # bytes received meanwhile
        self.ended = False  # the client's input ended (half-closed, or gone) while a request was under way

    def data_received(self, data: bytes) -> None:
        listener = self.listener
        listener.stats.bytes_in += len(data)
        if self.waiting is not None:
            # pipelined requests wait in aiohttp's queue while a job runs: bound what a client may pile up
            self.backlog += len(data)
            if self.backlog > listener.pipeline_limit:
                log.warning("closing HTTP connection from %s: %d bytes sent while its request was running",
                            self.peername[0] if isinstance(self.peername, tuple) else "-", self.backlog)
                self.force_close()
                return
        super().data_received(data)

    def eof_received(self) -> bool | None:
        # A client that half-closed after its request still gets the answer (a background handle comes
        # within a loop turn, or a store commit). But the end of its input closes the connection at once
        # when the request's body is unfinished (it can never come), and while it waits for a foreground
        # job: that is taken as the client leaving (it cannot be told from a full close), and a job still
        # queued for nobody else is dropped, as for a Gearman client. Idle: close, as aiohttp does.
        request = self.request
        if request is None:
            waiter = self._waiter
            if waiter is not None and not waiter.done():  # idle: no request received (None: one on its way)
                return None
        elif not request.content.is_eof() or (self.waiting is not None and not self.waiting.background):
            return None
        self.ended = True
        self.close()  # answer what was received, then close
        return True

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """A request aiohttp could not parse (or a handler that failed): a JSON error, and the connection closes."""
        if request.writer.output_size > 0:
            raise ConnectionError("the response was under way: no error response can follow it")
        if isinstance(exc, LineTooLong) or (status == 400 and "too many headers" in str(exc).lower()):
            status, text = 431, f"request head too large (lines of at most {MAX_LINE} bytes, {MAX_HEADERS} headers)"
        elif status == 500:
            log.error("HTTP request from %s failed", request.remote, exc_info=exc)
            text = "internal error (logged)"
        else:
            text = f"bad request: {getattr(exc, 'message', None) or message or exc}"
            log.info("bad HTTP request from %s: %s", request.remote, text)
        return error(status, text, close=True)


class HttpListener:
    """The HTTP socket of one server, its routes and its counters."""

    def __init__(self, view: ServerView, options: HttpOptions) -> None:
        self.view = view
        self.options = options
        self.max_body = min(options.max_body, options.max_packet_size)
        self.header_timeout = options.header_timeout
        self.pipeline_limit = self.max_body + PIPELINE_SLACK
        self.hosts = HostCheck(options.allowed_hosts)
        self.stats = view.http = HttpStats()
        self.registry = metrics.make_registry()
        self.static = Static()
        self.web: web.Server | None = None
        self.listener: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.web = web.Server(self.handle, request_factory=self._request, handler_cancellation=True, loop=loop)
        settings = {"loop": loop, "keepalive_timeout": self.header_timeout, "max_line_size": MAX_LINE,
                    "max_field_size": MAX_LINE, "max_headers": MAX_HEADERS, "auto_decompress": False,
                    "access_log": log, "access_log_class": self._access_log_class(), "logger": log}
        host, port = self.options.host, self.options.port
        try:
            self.listener = await loop.create_server(lambda: HttpProtocol(self, self.web, **settings),
                                                     host=host or None, port=port, reuse_address=True)
        except OSError as exc:
            raise OSError(exc.errno, f"HTTP listener on {host}:{port}: {exc.strerror}") from exc
        self.stats.addresses = [s.getsockname()[:2] for s in self.listener.sockets]
        self.hosts.listening_on(self.stats.addresses)
        where = ", ".join(f"http://{h}:{p}/" for h, p in self.addresses)
        hosts = ""
        if self.hosts.active:
            hosts = "; answering only requests for " + ", ".join(["localhost", "loopback addresses",
                                                                  *sorted(self.hosts.names - {"localhost"})])
        log.log(25, "HTTP listening on %s (dashboard, /api, /metrics, POST /FUNCTION)%s", where, hosts)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return self.stats.addresses

    def stop_accepting(self) -> None:
        """Graceful shutdown: no new HTTP connections; requests under way are still answered."""
        if self.listener is not None:
            self.listener.close()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
        if self.web is not None:
            for protocol in self.web.connections:
                protocol.force_close()

    @staticmethod
    def _request(message: RawRequestMessage, payload: StreamReader, protocol: web.RequestHandler,
                 writer: AbstractStreamWriter, task: asyncio.Task[None]) -> web.BaseRequest:
        """aiohttp's request, answered as HTTP/1.1 whatever the client's version (RFC 9110 6.2: the highest
        version we conform to); an HTTP/1.0 client still gets its connection closed after the response."""
        if message.version != HttpVersion11:
            message = message._replace(version=HttpVersion11)
        return web.BaseRequest(message, payload, protocol, writer, task, asyncio.get_running_loop())

    def _access_log_class(self) -> type[AbstractAccessLogger]:
        stats = self.stats

        class AccessLog(AbstractAccessLogger):
            """After each response: the counters, and the access line at INFO."""

            def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
                stats.bytes_out += request.writer.output_size
                status = response.status
                stats.responses[status] = stats.responses.get(status, 0) + 1
                if log.isEnabledFor(logging.INFO):
                    client = request.remote or "-"
                    size = response.body_length
                    log.info("%s %s %s %d %d %.1fms", client, request.method, request.raw_path, status, size,
                             time * 1000.0, extra={"client": client, "method": request.method,
                                                   "target": request.raw_path, "status": status, "bytes": size,
                                                   "ms": round(time * 1000.0, 3)})

        return AccessLog

    # ------------------------------------------------------------------ routing

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        method = request.method
        protocol: HttpProtocol = request.protocol  # type: ignore[assignment]
        protocol.request = request
        try:
            refusal = self.hosts.refusal(request.headers.get("Host"))
            if refusal is not None:
                return error(403, refusal)
            path, _, query = request.raw_path.partition("?")
            if not path.startswith("/"):
                return error(400, "the request target must be a path")
            rest = path.lstrip("/")
            if method in ("POST", "PUT", "DELETE") and _cross_origin(request):
                return error(403, "cross-origin request refused: a web page of another site may not submit or cancel "
                             "jobs (send no Origin header, or one matching Host)")
            if method in ("POST", "PUT"):
                if rest in RESERVED_PATHS or rest.startswith(RESERVED_PREFIXES):
                    changed = await self.change(request, method, rest, query)
                    if changed is not None:
                        return changed
                    return error(405, f"{method} {path} is not a job submission: these paths are the server's own",
                                 headers={"allow": _allowed(rest)})
                return await self.submit(request, unquote_to_bytes(rest.encode("utf-8", "surrogateescape")))
            if method in ("GET", "HEAD"):
                return await self.get(rest, query)
            if method == "DELETE":
                return await self.delete(request.remote or "-", rest, query)
            return error(405, f"method {method} not allowed", headers={"allow": _allowed(rest)})
        except api.ApiError as exc:
            return error(exc.status, exc.message)
        except Refused as exc:
            return error(exc.status, exc.message, close=exc.close, headers=exc.headers)
        except Exception:
            log.exception("HTTP %s %s failed", method, request.raw_path)
            return error(500, "internal error (logged)", close=True)
        finally:
            protocol.request = None

    # ------------------------------------------------------------------ GET and DELETE

    async def get(self, rest: str, query: str) -> web.Response:
        view = self.view
        if rest in ("healthz", "readyz"):
            if rest == "healthz":
                return as_json(view.health.live().as_json("live"))
            report = await view.health.ready()
            return as_json(report.as_json("ready"), 200 if report.ok else 503)
        if rest == "metrics":
            # copy the numbers now; format them in a thread (a big scrape must not hold up the loop)
            snap = metrics.Snapshot(view)
            text = await asyncio.get_running_loop().run_in_executor(None, metrics.render, snap, self.registry)
            return respond(200, text, metrics.CONTENT_TYPE)
        if rest in ("", "dashboard", "dashboard/"):
            rest = "dashboard/index.html"
        if rest == "openapi.json":
            rest = "dashboard/openapi.json"
        if rest.startswith("dashboard/"):
            found = self.static.get(rest[len("dashboard/"):])
            if found is None:
                return error(404, "no such file")
            return respond(200, found[0], found[1], headers=STATIC_HEADERS)
        parts = rest.split("/")
        if parts[0] != "api":
            return error(404, f"nothing at /{rest}: submit jobs with POST /FUNCTION; the API is under /api/ "
                         "(see /openapi.json)")
        state = view.state
        args = dict(parse_qsl(query, encoding="utf-8", errors="surrogateescape"))
        route = parts[1:]
        if route == ["server"]:
            return as_json(api.server_info(view, time.time()))
        if route == ["functions"]:
            return as_json({"functions": api.functions(state)})
        if len(route) == 2 and route[0] == "functions" and route[1]:
            return as_json(api.function(state, _name(route[1])))
        if route == ["workers"]:
            return as_json({"workers": api.workers(state)})
        if route == ["jobs"]:
            return as_json(api.jobs(state, args))
        if len(route) == 2 and route[0] == "jobs" and route[1]:
            state.now = time.time()  # a kept outcome that expired by now is not shown
            return as_json(api_kept.outcome(state, _name(route[1])))
        if route == ["policies"]:
            return as_json(api_kept.policies(state.life))
        if len(route) == 3 and route[0] == "functions" and route[1] and route[2] == "policy":
            return as_json(api_kept.policy_view(state.life, _name(route[1])))
        if route == ["failed"]:
            return as_json(api_kept.failed_list(state.life, args))
        if len(route) == 2 and route[0] == "failed" and route[1]:
            return as_json(api_kept.failed_one(state.life, route[1]))
        if route == ["recent"]:
            return as_json(api_kept.recent(state.life, args))
        return error(404, f"no API endpoint /{rest} (see /openapi.json)")

    def refused(self, host: str, command: bytes, what: str) -> web.Response | None:
        """403 if HOST may not run the admin COMMAND this call stands for (the hook the admin text command answers
        to: --acl, --admin-loopback-only); None if it may."""
        allowed = self.view.admin_allowed
        if allowed is not None and not allowed(as_peer(self.view, host), command):
            return error(403, f"permission denied: {what} is an admin command this address may not run")
        return None

    async def delete(self, host: str, rest: str, query: str = "") -> web.Response:
        """DELETE /api/jobs/{handle} (admin `cancel job`), /api/functions/{name}/policy (`policy NAME none`),
        /api/failed/{id} and /api/failed?function=NAME|all=true (`failed discard`), under the same permission hook."""
        try:
            return await self._delete(host, rest, query)
        except api.ApiError as exc:
            return error(exc.status, exc.message)

    async def _delete(self, host: str, rest: str, query: str) -> web.Response:
        parts = rest.split("/")
        view = self.view
        state = view.state
        if len(parts) == 3 and parts[:2] == ["api", "jobs"] and parts[2]:
            refused = self.refused(host, b"cancel", "cancelling a job")
            if refused is not None:
                return refused
            state.now = time.time()
            return as_json(api.cancel_job(state, _name(parts[2]), view.flush))
        if len(parts) == 4 and parts[:2] == ["api", "functions"] and parts[2] and parts[3] == "policy":
            refused = self.refused(host, b"policy", "dropping a function's policy")
            if refused is not None:
                return refused
            answer = api_kept.drop_policy(state.life, _name(parts[2]))
            await stored(state)
            return as_json(answer)
        if parts[:2] == ["api", "failed"] and (len(parts) == 2 or len(parts) == 3 and parts[2]):
            refused = self.refused(host, b"failed", "discarding failed jobs")
            if refused is not None:
                return refused
            args = dict(parse_qsl(query, encoding="utf-8", errors="surrogateescape"))
            answer = api_kept.discard(state, parts[2] if len(parts) == 3 else None, args)
            await stored(state)
            return as_json(answer)
        return error(405, "DELETE works on /api/jobs/{handle} (cancels a queued job), /api/functions/{name}/policy "
                     "and /api/failed (the failed-job registry)", headers={"allow": _allowed(rest)})

    async def change(self, request: web.BaseRequest, method: str, rest: str, query: str) -> web.Response | None:
        """PUT /api/functions/{name}/policy (admin `policy NAME WORDS`), POST /api/failed/{id}/requeue and
        /api/failed/requeue?function=NAME|all=true (`failed requeue`), under the same permission hook; None for
        any other path."""
        parts = rest.split("/")
        view = self.view
        state = view.state
        host = request.remote or "-"
        if method == "PUT" and len(parts) == 4 and parts[:2] == ["api", "functions"] and parts[2] \
                and parts[3] == "policy":
            refused = self.refused(host, b"policy", "setting a function's policy")  # before a byte of the body
            if refused is not None:
                return refused
            body, held = await self.read_body(request, POLICY_BODY)
            view.budget.give(held)
            words = api_kept.policy_words(body, request.content_type == JSON)
            answer = api_kept.put_policy(state.life, _name(parts[2]), words)
            await stored(state)
            return as_json(answer)
        if method == "POST" and parts[:2] == ["api", "failed"] and parts[-1] == "requeue" and len(parts) in (3, 4) \
                and all(parts[2:]):
            refused = self.refused(host, b"failed", "requeueing failed jobs")
            if refused is not None:
                return refused
            args = dict(parse_qsl(query, encoding="utf-8", errors="surrogateescape"))
            state.now = time.time()
            answer = api_kept.requeue(state, parts[2] if len(parts) == 4 else None, args)
            view.flush()  # a requeued job may wake a worker
            await stored(state)
            return as_json(answer)
        return None

    # ------------------------------------------------------------------ job submission

    async def submit(self, request: web.BaseRequest, name: bytes) -> web.Response:
        if not name:
            return error(404, "must give function name in URI")
        unique, background, priority = b"-", False, NORMAL
        for key, value in request.headers.items():
            key = key.lower()
            if key == "x-gearman-unique":
                unique = value.encode("utf-8", "surrogateescape")
            elif key == "x-gearman-background":
                background = value.lower() == "true"
            elif key == "x-gearman-priority":
                value = value.lower()
                priority = HIGH if value == "high" else LOW if value == "low" else NORMAL
        if len(unique) > MAX_UNIQUE_SIZE:
            raise Refused(400, f"X-Gearman-Unique longer than {MAX_UNIQUE_SIZE} bytes")
        protocol: HttpProtocol = request.protocol  # type: ignore[assignment]
        transport = request.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        submission = Submission(self.view, request.remote or "-", sock.fileno() if sock is not None else -1)
        try:
            if not submission.allowed(name):  # before a byte of the body is read
                raise Refused(403, "submit not allowed", headers={"x-gearman-command": "ERROR",
                                                                   "x-gearman-error": "PERMISSION_DENIED"})
            try:
                data, held = await self.read_body(request)
            except Refused as exc:
                if exc.status == 503:
                    log.warning("refusing an HTTP submission from %s: %s", request.remote, exc.message)
                raise
            budget = self.view.budget
            try:
                if len(name) + len(unique) + len(data) + 2 > self.options.max_packet_size:
                    raise Refused(413, f"job larger than the server's max packet size ({self.options.max_packet_size}"
                                  " bytes, --max-packet-size)", close=False)
                if protocol.ended and not background:  # its client left (see eof_received): run nothing for it
                    protocol.force_close()
                    raise Refused(400, "the client left before its foreground job was submitted")
                protocol.waiting = submission
                outcome = submission.submit(name, unique, data, priority, background)
            finally:
                budget.give(held)  # the body is the job's data now, or dropped
            del data
            return self.answer(request, await outcome)
        finally:
            protocol.waiting = None
            protocol.backlog = 0
            submission.close()

    async def read_body(self, request: web.BaseRequest, limit: int | None = None) -> tuple[bytes, int]:
        """The request's body, and the bytes of the input cap it holds (give them back when done with it).

        A body declared over the limit (--http-max-body, or LIMIT), or more than the cap has left, is refused
        before it is read; one that grows past either while it comes (chunked) is refused then; between two of
        its chunks at most --http-header-timeout may pass."""
        too_big = f"request body larger than {limit} bytes" if limit is not None else ""
        if limit is None:
            limit = self.max_body
            too_big = f"request body larger than {limit} bytes (--http-max-body)"
        length = request.content_length
        if length is not None and length > limit:
            raise Refused(413, too_big)
        budget = self.view.budget
        held = length or 0
        if held and not budget.take(held):
            raise Refused(503, budget.refusal(), headers={"retry-after": "1"})
        content = request.content
        chunks: list[bytes] = []
        size = 0
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(None) as deadline:
                while True:
                    if not content.is_eof():  # the rest has not all come yet: wait for it, but not forever
                        deadline.reschedule(loop.time() + self.header_timeout)
                    chunk = await content.readany()
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > limit:
                        raise Refused(413, too_big)
                    if size > held:
                        if not budget.take(size - held):
                            raise Refused(503, budget.refusal(), headers={"retry-after": "1"})
                        held = size
                    chunks.append(chunk)
        except TimeoutError:
            budget.give(held)
            raise Refused(408, f"no part of the request body came within {self.header_timeout:g}s "
                          "(--http-header-timeout)") from None
        except BaseException:
            budget.give(held)
            raise
        if held > size:  # a Content-Length the body did not reach
            budget.give(held - size)
            held = size
        return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), held

    def answer(self, request: web.BaseRequest, outcome: Outcome) -> web.Response:
        """The HTTP response for how the submission ended."""
        command, handle = outcome.command, outcome.handle
        headers = {"x-gearman-job-handle": _text(handle), "x-gearman-command": command.decode()}
        if command == b"JOB_CREATED":
            return respond(200, handle + b"\n", TEXT, headers=headers)
        if command == b"WORK_COMPLETE":
            return respond(200, outcome.data, BINARY, headers=headers)
        wants_json = JSON in request.headers.get("Accept", "")
        if command == b"WORK_EXCEPTION":
            if wants_json:
                return error(500, "the job's worker raised an exception", headers=headers,
                             exception=_text(outcome.data), handle=_text(handle))
            return respond(500, outcome.data, BINARY, headers=headers)
        if command == b"WORK_FAIL":
            if wants_json:
                return error(500, "job failed", headers=headers, handle=_text(handle))
            return respond(500, b"job failed\n", TEXT, headers=headers)
        headers = {"x-gearman-command": "ERROR", "x-gearman-error": _text(outcome.code)}
        return error(ERROR_STATUS.get(outcome.code, 400), _text(outcome.data), headers=headers)


def _name(segment: str) -> bytes:
    """A path segment as the bytes it percent-encodes."""
    return unquote_to_bytes(segment.encode("utf-8", "surrogateescape"))
