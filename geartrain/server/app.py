"""Wiring of the job server: options -> store, state, listener, timers, signals and the log.

``Server`` owns one State, one listening socket and its Connections. It flushes output once per
loop turn (every connection with output gets one write), runs the state's timers (epoch jobs,
CAN_DO_TIMEOUT, cron) with a single loop timer set to the earliest due time, and handles
SIGTERM/SIGINT (stop), SIGUSR1 (graceful: stop accepting, let running jobs finish) and SIGHUP
(reopen the log file). ``run(options)`` is what `geartrain serve` calls.

Readiness and the service manager: ``Server.health`` (health.py) answers /healthz, /readyz and the admin
commands ``health`` and ``ready``; ``Server.notifier`` (notify.py, set by ``serve`` from systemd's
variables) is told READY=1 once the queue is replayed and the ports listen, STATUS= while the queue's
database is awaited, STOPPING=1 when a stop begins, and pinged by the watchdog.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import logging.handlers
import os
import signal
import socket
import ssl
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from ..protocol.packets import DEFAULT_MAX_PACKET_SIZE
from . import listen as listening
from .acl import ACL, admin_hook
from .budget import InputBudget, default_limit
from .commands import Admin
from .connection import Connection, Port, sweep
from .group import GroupCommit
from .health import Health
from .logfmt import make_formatter
from .notify import Notifier
from .policy import Policy
from .pump import Pump
from .state import State
from .store.base import MemoryStore, Store, StoreError

log = logging.getLogger("geartrain.server")

#: gearmand's verbosity names -> logging levels (NOTICE sits between INFO and WARNING)
NOTICE = 25
LEVELS = {
    "FATAL": logging.CRITICAL + 10, "ALERT": logging.CRITICAL + 5, "CRITICAL": logging.CRITICAL,
    "ERROR": logging.ERROR, "WARNING": logging.WARNING, "NOTICE": NOTICE, "INFO": logging.INFO,
    "DEBUG": logging.DEBUG,
}
for _name, _level in LEVELS.items():
    logging.addLevelName(_level, _name)

#: the version string `version` reports (gearmand prints its package version)
VERSION = f"geartrain-{__version__}"


@dataclass
class Options:
    """Everything `geartrain serve` can be told."""

    listen: str = "127.0.0.1"
    port: int = 4730
    backlog: int = field(default_factory=listening.system_backlog)  # gearmand's is 32: listen.py says why not
    job_retries: int = 0
    handle_prefix: bytes | None = None
    worker_wakeup: int = 1
    exceptions: bool = False
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
    max_connections: int = 0
    keepalive: bool = False
    keepalive_idle: int = -1
    keepalive_interval: int = -1
    keepalive_count: int = -1
    log_file: str = "stderr"
    verbose: str = "ERROR"
    pid_file: str | None = None
    log_format: str = "plain"  # or "json" (server/logfmt.py)
    syslog: str | None = None  # --syslog: the syslog socket to log to as well (SYSLOG_SOCKET)
    http_port: int = 0  # 0: no HTTP listener (server/http.py)
    http_listen: str | None = None  # None: the same address as --listen
    http_max_body: int = 16 * 1024 * 1024  # largest HTTP request body (never more than max_packet_size)
    http_header_timeout: float = 60.0  # seconds an HTTP connection may be idle or take to send a request head
    http_allowed_hosts: tuple[str, ...] = ()  # Host names a loopback HTTP listener answers besides its own
    max_buffered_input: int = -1  # bytes of unfinished input held over all connections; -1: budget.default_limit()
    hash_buckets: int = 991  # gearmand's --hashtable-buckets: the order `show jobs` lists jobs in
    write_high: int = 4 * 1024 * 1024
    write_hard_limit: int = 256 * 1024 * 1024
    # hardening (docs/reliability.md, server/tls.py, server/acl.py)
    ssl_context: ssl.SSLContext | None = None  # --ssl: the Gearman port speaks TLS
    acl: ACL | None = None  # --acl FILE; None: open, as gearmand
    admin_loopback_only: bool = False  # state-changing admin commands only from loopback
    partial_timeout: float = 60.0  # seconds a partial packet or TLS handshake may take (slowloris); 0: no limit
    idle_timeout: float = 0.0  # seconds a connection that neither works nor waits may stay silent; 0: no limit
    busy_poll: float = 50e-6  # seconds the loop keeps polling after each write; 0: never
    grab_wait: float = 150e-6  # seconds a grab that finds no job waits for one (polling); 0: to the turn's end
    wake_timeout: float = 0.1  # seconds a woken worker has to grab before its wake-up goes to another; 0: never
    # what outlives a job (server/policy.py, server/kept.py): the policy of every function without its own,
    # each function's own (applied at every start), and the bounds of the kept results and the failed registry
    default_policy: Policy | None = None
    policies: dict[bytes, Policy] = field(default_factory=dict)
    keep_results_max: int = 100_000
    keep_results_bytes: int = 64 << 20
    failed_max: int = 10_000
    failed_max_payload: int = 1 << 20
    store: Store = field(default_factory=MemoryStore)


def default_handle_prefix() -> bytes:
    """gearmand's default: ``H:<hostname>``."""
    return b"H:" + socket.gethostname().encode(errors="replace")


class LogFile:
    """The server's log destination: a file (reopened on SIGHUP), stderr, or nothing; and, with --syslog,
    syslog as well (as gearmand: ident and pid, facility user, each level at its syslog priority)."""

    def __init__(self, path: str, level: str, fmt: str = "plain", syslog: str | None = None) -> None:
        self.path = path
        self.fmt = fmt
        self.level_name = level.upper()
        self.handler: logging.Handler | None = None
        root = logging.getLogger("geartrain")
        root.setLevel(LEVELS.get(self.level_name, logging.ERROR))
        root.propagate = False
        self.open()
        self.syslog: logging.Handler | None = None
        if syslog is not None:
            try:
                self.syslog = syslog_handler(syslog, fmt)
            except OSError as exc:
                report(f"--syslog: cannot reach the syslog socket {syslog}: {exc.strerror or exc}; "
                      "logging without syslog", self, level=logging.WARNING)
            else:
                root.addHandler(self.syslog)

    @property
    def on_stderr(self) -> bool:
        """Does the log go to stderr (so what it says needs no second print there)?"""
        return self.path == "stderr"

    def open(self) -> None:
        root = logging.getLogger("geartrain")
        if self.handler is not None:
            root.removeHandler(self.handler)
            self.handler.close()
        if self.path == "none":
            handler: logging.Handler = logging.NullHandler()
        elif self.path == "stderr":
            handler = logging.StreamHandler(sys.stderr)
        else:
            handler = logging.FileHandler(self.path)
        handler.setFormatter(make_formatter(self.fmt))
        self.handler = handler
        root.addHandler(handler)

    def reopen(self) -> None:
        self.open()
        log.log(NOTICE, "log file reopened")


class SyslogHandler(logging.handlers.SysLogHandler):
    """SysLogHandler that knows gearmand's levels (FATAL is emerg, NOTICE notice, ...) and, as syslog(3)
    does, drops a line it cannot send (syslog restarting) instead of printing a traceback; the next
    line connects again."""

    PRIORITIES = {"FATAL": "emerg", "ALERT": "alert", "CRITICAL": "crit", "ERROR": "err", "WARNING": "warning",
                  "NOTICE": "notice", "INFO": "info", "DEBUG": "debug"}

    def mapPriority(self, levelName: str) -> str:  # noqa: N802, N803 - logging's names
        return self.PRIORITIES.get(levelName, "warning")

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        return None


#: where syslog listens on Linux (journald or rsyslog)
SYSLOG_SOCKET = "/dev/log"


def syslog_handler(address: str, fmt: str) -> logging.Handler:
    """A handler writing to the syslog socket at ADDRESS as `geartrain[PID]: LEVEL message`; OSError if
    nothing listens there (logging's handler would stay silent about that, as openlog(3) does)."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):  # the two kinds SysLogHandler tries, in its order
        with socket.socket(socket.AF_UNIX, kind) as probe:
            try:
                probe.connect(address)
                break
            except OSError as exc:
                error = exc
    else:
        raise error
    handler = SyslogHandler(address=address, facility=logging.handlers.SysLogHandler.LOG_USER)
    handler.ident = f"geartrain[{os.getpid()}]: "
    handler.setFormatter(make_formatter(fmt, stamp=False))  # syslog stamps each line itself
    return handler


class Server:
    """One running job server."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.store = options.store
        self.sweeper: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.committer: GroupCommit | None = None
        # readiness and the service manager (health.py, notify.py)
        self.health = Health(self.store)
        self.notifier = Notifier()  # serve() sets the one systemd's variables ask for
        self.admin = Admin(State(), version=VERSION, verbose=lambda: options.verbose.upper(),
                           shutdown=self.request_shutdown, health=self.health, flush=lambda: self.pump.schedule())
        self.admin.hash_buckets = options.hash_buckets
        if options.acl is not None or options.admin_loopback_only:
            self.admin.allowed = admin_hook(options.admin_loopback_only)
        self.reset()
        self.listeners: list[asyncio.AbstractServer] = []  # one per address -L resolves to
        self.sockets: list[socket.socket] = []
        self.stopped: asyncio.Event | None = None
        self.started = time.time()
        self.http: Any = None  # the HTTP listener, with --http-port
        limit = options.max_buffered_input
        self.budget = InputBudget(default_limit() if limit < 0 else limit)  # read by Connection and HTTP
        self.port = Port(self.state, self.pump, self.budget, options.max_packet_size, options.max_connections,
                         options.ssl_context, options.acl,
                         (options.keepalive_idle, options.keepalive_interval, options.keepalive_count)
                         if options.keepalive else None,
                         options.write_high, options.write_hard_limit, options.partial_timeout, options.idle_timeout)
        self.graceful = False

    def reset(self) -> None:
        """Start from an empty State (and its pump): at start, and after a replay cut short."""
        self.state = self.new_state()
        self.state.text = self.admin.run
        self.admin.state = self.state
        self.pump = Pump(self.state, busy_poll=self.options.busy_poll, loop=self.loop)
        self.committer = None

    def new_state(self) -> State:
        """An empty State with the options' settings and hooks."""
        options = self.options
        state = State(
            handle_prefix=options.handle_prefix if options.handle_prefix is not None else default_handle_prefix(),
            job_retries=options.job_retries,
            worker_wakeup=options.worker_wakeup,
            exceptions=options.exceptions,
            notice=lambda msg, **fields: log.log(NOTICE, "%s", msg, extra=fields),  # fields: the JSON log's
            now=time.time(),
            defer_no_job=True,  # flush and _poll answer the deferred grabs
            grab_wait=options.grab_wait,  # the loop polls while a grab waits
            wake_timeout=options.wake_timeout,
        )
        if options.acl is not None:  # no ACL: the hook stays None and costs nothing
            state.acl = options.acl.state_hook
        life = state.life
        life.kept.max_count, life.kept.max_bytes = options.keep_results_max, options.keep_results_bytes
        life.failed_jobs.max_count, life.failed_jobs.max_payload = options.failed_max, options.failed_max_payload
        life.set_default_policy(options.default_policy)
        for name, policy in options.policies.items():
            life.set_policy(life.function(name), policy, store=False)
        return state

    # ------------------------------------------------------------------ start and stop

    #: seconds between attempts to open the durable queue at start, doubling from the first to the last
    open_retry_min = 0.5
    open_retry_max = 30.0

    async def start(self) -> None:
        """Bind the ports, open the queue and replay it, then listen. A port that cannot be bound raises
        ListenError before the queue is touched. While the queue's database cannot be reached, try again
        with a backoff (logged at NOTICE) and accept no connection; return early if told to stop meanwhile."""
        self.loop = self.pump.loop = asyncio.get_running_loop()
        if self.stopped is None:
            self.stopped = asyncio.Event()
        opts = self.options
        bound = listening.bind(opts.listen, opts.port, "Gearman")
        # the HTTP port is held too, so a taken one fails the start now; HttpListener binds it by address
        # itself, so it is let go just before that
        http_host = opts.http_listen or opts.listen
        try:
            held = listening.bind(http_host, opts.http_port, "HTTP") if opts.http_port else []
        except BaseException:
            listening.close(bound)
            raise
        try:
            if not await self.open_store():
                listening.close(bound)
                return
            port = self.port
            port.state, port.pump = self.state, self.pump  # the State the replay filled
            for sock in bound:
                clamp_mss(sock)
                try:
                    server = await self.loop.create_server(lambda: Connection(port), sock=sock, backlog=opts.backlog)
                except OSError as exc:  # bound by another process too, which listened first
                    host, number = sock.getsockname()[:2]
                    raise listening.ListenError(f"cannot listen on {listening.where(host, number)} (Gearman): "
                                             f"{exc.strerror or exc}") from None
                self.listeners.append(server)
                self.sockets.append(sock)
        except BaseException:
            for server in self.listeners:
                server.close()
            listening.close(bound)
            raise
        finally:
            listening.close(held)
        self.arm_sweep()
        if opts.http_port:
            from .http import HttpListener, HttpOptions  # aiohttp is loaded only with --http-port
            from .view import ServerView

            view = ServerView(self.state, self.pump.schedule, self.started, self.store.name, lambda: self.addresses,
                              lambda: (port.bytes_in, self.pump.bytes_out), self.admin.allowed, opts.acl,
                              self.budget)
            self.http = HttpListener(view, HttpOptions(http_host, opts.http_port,
                                                       opts.http_max_body, opts.http_header_timeout,
                                                       opts.http_allowed_hosts, opts.max_packet_size))
            view.health = self.health
            await self.http.start()
        self.pump.arm_timer()
        self.health.replayed = True

    async def open_store(self) -> bool:
        """Open and replay the durable queue, retrying while it fails with StoreError. False if stopped first."""
        store = self.store
        delay = 0.0
        attempt = 0
        while True:
            attempt += 1
            try:
                await store.open()
                if store.durable:
                    await self.replay()
            except StoreError as exc:
                delay = min(self.open_retry_max, max(self.open_retry_min, delay * 2))
                log.log(NOTICE, "the %s queue is not available (attempt %d): %s; trying again in %.1fs, "
                        "accepting no connections until it is", store.name, attempt, exc, delay)
                self.notifier.status(f"waiting for the {store.name} queue (attempt {attempt}): {exc}")
                if self.committer is not None:  # a replay cut short: start again from an empty state
                    self.reset()
                assert self.stopped is not None
                try:
                    await asyncio.wait_for(self.stopped.wait(), delay)
                    return False
                except TimeoutError:
                    continue
            if attempt > 1:
                log.log(NOTICE, "the %s queue is available after %d attempts", store.name, attempt)
            return True

    async def replay(self) -> None:
        """Queue again every job the durable store holds."""
        store = self.store
        self.committer = GroupCommit(store, after=self.pump.schedule, loop=self.loop,
                                     on_jobs=self.state.jobs_committed)
        self.state.committer = self.committer
        count = 0
        self.state.now = time.time()
        self.state.restore_extras(await store.replay_extras())  # before the jobs: their handles count on past these
        async for batch in store.replay_batches():
            for stored in batch:
                self.state.restore(stored)
            count += len(batch)
        if count:
            log.log(NOTICE, "replayed %d job(s) from the %s queue", count, store.name)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [s.getsockname()[:2] for s in self.sockets]

    def request_shutdown(self, graceful: bool = False) -> None:
        """Stop now, or (GRACEFUL) stop accepting, hand out no new jobs, and stop when none is running."""
        if not self.health.stopping or not graceful:
            self.health.stopping = True
            self.notifier.stopping("stopping gracefully: running jobs finish" if graceful else "stopping")
        if graceful:
            if not self.graceful:
                log.log(NOTICE, "graceful shutdown: no new connections or jobs; waiting for running jobs")
                self.graceful = True
                self.state.draining = True
                for listener in self.listeners:
                    listener.close()
                if self.http is not None:
                    self.http.stop_accepting()
                assert self.loop is not None
                self.loop.call_soon(self._check_drained)
        elif self.stopped is not None:
            self.stopped.set()

    def _check_drained(self) -> None:
        if self.stopped is None or self.stopped.is_set():
            return
        if not any(f.running for f in self.state.functions.values()):
            self.stopped.set()
            return
        assert self.loop is not None
        self.loop.call_later(0.05, self._check_drained)

    async def wait_stopped(self) -> None:
        assert self.stopped is not None
        await self.stopped.wait()

    async def close(self) -> None:
        if self.http is not None:
            self.http.close()
        for listener in self.listeners:
            listener.close()
        if self.committer is not None:
            # submissions waiting for the store: commit them and answer JOB_CREATED before closing
            try:
                await asyncio.wait_for(self.committer.drain(), 10)
            except TimeoutError:
                log.error("the %s queue did not commit within 10 s of shutdown", self.store.name)
        self.pump.flush()
        for peer in list(self.state.peers.values()):
            if peer.transport is not None:
                peer.transport.close()
        self.pump.cancel_timer()
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        if self.committer is not None:
            try:
                await asyncio.wait_for(self.committer.drain(), 10)  # the dones of what finished meanwhile
            except TimeoutError:
                log.error("the %s queue did not commit within 10 s of shutdown", self.store.name)
        try:
            await self.store.close()
        except Exception as exc:  # closing a broken store must not hide the shutdown
            log.error("closing the %s queue: %s", self.store.name, exc)

    # ------------------------------------------------------------------ stalled connections

    def arm_sweep(self) -> None:
        """Look for stalled connections every quarter of the shortest timeout (at most once a second)."""
        limits = [t for t in (self.port.partial_timeout, self.port.idle_timeout) if t > 0]
        if limits and self.loop is not None:
            self.sweeper = self.loop.call_later(min(max(min(limits) / 4, 0.05), 1.0), self.sweep)

    def sweep(self) -> None:
        self.sweeper = None
        sweep(self.port, time.time())
        self.arm_sweep()


#: the MSS the listening socket negotiates for every accepted connection (loopback's own is ~64 KiB)
MSS_CLAMP = 16 * 1024


def clamp_mss(sock: socket.socket) -> None:
    """Negotiate a 16 KiB MSS on accepted connections. A peer with a small SO_RCVBUF (libgearman sets
    32 KiB) can advertise a window just under a loopback-sized MSS; Linux then sends nothing from a full
    segment queued behind it and waits on zero-window probes (seconds). Our coalesced writes queue full
    segments; with the segment size clamped, such a window still lets the next one go."""
    if sock.family in (socket.AF_INET, socket.AF_INET6) and hasattr(socket, "TCP_MAXSEG"):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, MSS_CLAMP)
        except OSError as exc:
            log.info("could not set TCP_MAXSEG on the listening socket: %s", exc)


# ---------------------------------------------------------------------- process-level running


def install_uvloop() -> str:
    """Use uvloop when it is installed; return the loop's name (with a hint when it is not)."""
    try:
        import uvloop
    except ImportError:
        return "asyncio (uvloop is not installed: pip install 'geartrain[server]')"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def tune_gc() -> None:
    """Collect young objects less often: a million queued jobs must not be rescanned every few thousand
    allocations (jobs hold no reference cycles once finished, so little is ever left for the collector)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


#: glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3


def tune_malloc() -> bool:
    """Keep big payloads on malloc's heap instead of a fresh mmap each (glibc only; True if done).

    By default glibc maps every allocation over 128 KiB (then over the last freed one's size) with
    mmap and trims the heap top back to the system once 128 KiB of it is free, so a server passing
    1 MiB jobs through page-faults and zeroes every payload buffer it reads or writes again (what that
    cost in scenario 5c, dated, is in docs/benchmarks.md). With mmap only from 4 MiB and the heap
    trimmed only past 16 MiB free, those buffers are reused; bigger blocks (the job index's tables
    under a million queued jobs) are still mapped and given back when freed, so the memory held per
    queued job does not grow."""
    import ctypes
    import ctypes.util
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 4 << 20) and libc.mallopt(M_TRIM_THRESHOLD, 16 << 20)
                    and libc.mallopt(M_TOP_PAD, 1 << 20))
    except (OSError, AttributeError):
        return False


def daemonize() -> int:
    """Detach from the terminal (-d), as gearmand does.

    The first process exits only once the daemon listens and has written its pid file (0) or has
    failed to start (1), so `systemctl start` (Type=forking, PIDFile=) and scripts see the truth.
    Returns the pipe the daemon writes b"1" to when it is serving."""
    r, w = os.pipe()
    if os.fork() > 0:
        os.close(w)
        ok = os.read(r, 1)
        os._exit(0 if ok == b"1" else 1)
    os.close(r)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    return w


def report(message: str, logfile: LogFile | None, level: int = logging.CRITICAL) -> None:
    """Why the server cannot run (or, at a lower LEVEL, what it runs without): logged, and printed on stderr
    unless the log already writes it there (so a terminal shows it once; a log file or syslog has it too)."""
    log.log(level, "%s", message)
    if logfile is None or not logfile.on_stderr or not log.isEnabledFor(level):
        print(f"geartrain serve: {message}", file=sys.stderr)


def queue_label(store: Store) -> str:
    """The queue for the start-up line: its kind and, for a durable one, where it is (no password)."""
    place = store.where()
    return f"{store.name} {place}" if place else store.name


async def serve(options: Options, logfile: LogFile | None = None, loop_name: str = "asyncio",
                ready_fd: int | None = None) -> int:
    server = Server(options)
    loop = asyncio.get_running_loop()
    server.stopped = asyncio.Event()  # signals work while the start waits for the queue's database
    server.notifier = Notifier.from_environ()  # systemd's Type=notify, WatchdogSec= (notify.py)
    server.notifier.start_watchdog(loop)
    loop.add_signal_handler(signal.SIGTERM, server.request_shutdown, False)
    loop.add_signal_handler(signal.SIGINT, server.request_shutdown, False)
    loop.add_signal_handler(signal.SIGUSR1, server.request_shutdown, True)
    if logfile is not None:
        loop.add_signal_handler(signal.SIGHUP, logfile.reopen)
    try:
        await server.start()
    except listening.ListenError as exc:
        report(str(exc), logfile)
        return 1
    except Exception as exc:  # e.g. the durable queue cannot be opened or replayed
        report(f"could not start: {type(exc).__name__}: {exc}", logfile)
        return 1
    if server.stopped.is_set() and not server.listeners:  # told to stop while waiting for the queue
        log.log(NOTICE, "stopped before the %s queue became available", options.store.name)
        try:
            await options.store.close()
        except Exception as exc:  # noqa: BLE001 - a store that never opened may not close cleanly
            log.info("closing the %s queue: %s", options.store.name, exc)
        return 0
    addresses = ", ".join(listening.where(h, p) for h, p in server.addresses)
    hint = " (only this machine can connect; use -L 0.0.0.0 to listen on all interfaces)" \
        if options.listen in ("127.0.0.1", "localhost", "::1") else ""
    log.log(NOTICE, "geartrain %s listening on %s%s; queue %s; %s; pid %d", __version__, addresses, hint,
            queue_label(options.store), loop_name, os.getpid())
    if options.pid_file:
        with open(options.pid_file, "w") as fh:
            fh.write(f"{os.getpid()}\n")
    if ready_fd is not None:
        os.write(ready_fd, b"1")
        os.close(ready_fd)
    server.notifier.ready(f"serving on {addresses}; queue {queue_label(options.store)}")
    try:
        await server.wait_stopped()
    finally:
        log.log(NOTICE, "shutting down")
        await server.close()
        if options.pid_file:
            try:
                os.unlink(options.pid_file)
            except OSError:
                pass
        server.notifier.close()
    return 0


def run(options: Options, *, daemon: bool = False) -> int:
    """Run a server until it is told to stop; the process entry point of `geartrain serve`."""
    ready_fd = daemonize() if daemon else None
    logfile = LogFile(options.log_file, options.verbose, options.log_format, options.syslog)
    loop_name = install_uvloop()
    tune_gc()
    tune_malloc()
    try:
        return asyncio.run(serve(options, logfile, loop_name, ready_fd))
    except KeyboardInterrupt:
        return 0


__all__ = ["Options", "Server", "run", "serve", "LEVELS", "VERSION"]
