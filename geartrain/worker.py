"""Gearman workers: ``AsyncWorker`` (asyncio) and ``Worker`` (blocking), one protocol core.

``AsyncWorker`` connects to every server it is given, registers its functions (CAN_DO, or
CAN_DO_TIMEOUT when a timeout is set), asks for work with GRAB_JOB_UNIQ so each job's unique is
known, sleeps with PRE_SLEEP until the server's NOOP (no polling) and reconnects with backoff,
registering again. It runs up to ``concurrency`` jobs at once and never asks for more jobs than it
has free slots (grabs in flight + jobs running <= concurrency), so it does not starve its peers.

Handlers take a ``WorkerJob`` and return the result (bytes, str, or anything the codec encodes).
Raising ``WorkFailed`` (or calling ``job.fail()``) sends WORK_FAIL (logged at INFO); any other exception
sends WORK_EXCEPTION with ``"Type: message"`` and then WORK_FAIL, and is logged once at WARNING with its
traceback (logger ``geartrain.worker``). Coroutine handlers run as tasks;
plain functions run inline on the loop when concurrency is 1, else in a thread pool.

``stop()`` (and SIGTERM/SIGINT when ``work(handle_signals=True)``) is graceful: no new grabs, jobs
already assigned run to the end and their results are sent, then the connections close.
``Worker`` runs an ``AsyncWorker`` on a private event loop in the calling thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import signal
import ssl as _ssl
import threading
from collections.abc import Awaitable, Callable, Sequence
from time import perf_counter
from typing import Any

from .codecs import BYTES, Codec
from .errors import WorkFailed
from .protocol import pack_req
from .protocol.packets import REQ, RES, T
from .transport import Backoff, Link, error_text, new_event_loop, normalize_servers

__all__ = ["AsyncWorker", "WorkFailed", "Worker", "WorkerJob"]

log = logging.getLogger("geartrain.worker")

_GRAB = pack_req(T.GRAB_JOB_UNIQ)
_PRE_SLEEP = pack_req(T.PRE_SLEEP)
_ASSIGN = {int(T.JOB_ASSIGN), int(T.JOB_ASSIGN_UNIQ), int(T.JOB_ASSIGN_ALL)}
_NOOP, _NO_JOB, _ERROR = int(T.NOOP), int(T.NO_JOB), int(T.ERROR)
_JOB_ASSIGN, _JOB_ASSIGN_UNIQ = int(T.JOB_ASSIGN), int(T.JOB_ASSIGN_UNIQ)
_WORK_COMPLETE = int(T.WORK_COMPLETE)
#: the first 8 bytes of a JOB_ASSIGN_UNIQ, and of a WORK_COMPLETE we send (the fast path builds both by hand)
_ASSIGN_UNIQ_HEAD = RES + _JOB_ASSIGN_UNIQ.to_bytes(4, "big")
_COMPLETE_HEAD = REQ + _WORK_COMPLETE.to_bytes(4, "big")

Handler = Callable[["WorkerJob"], Any] | Callable[["WorkerJob"], Awaitable[Any]]


def _b(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def _text(value: bytes | None) -> str:
    """A handle, function name or unique as people read it (not Python's bytes repr)."""
    return "" if value is None else value.decode(errors="replace")


class WorkerJob:
    """A job given to this worker: ``data`` (decoded by the worker's codec), ``raw``, ``unique``, ``handle``,
    ``function``; ``send_status``, ``send_data``, ``send_warning`` report progress; ``fail()`` fails it."""

    __slots__ = ("handle", "function", "unique", "raw", "data", "_ws", "_gen", "_finished", "_t0")

    def __init__(self, ws: _WServer, handle: bytes, function: bytes, unique: bytes | None, raw: bytes,
                 codec: Codec) -> None:
        self.handle = handle
        self.function = function
        self.unique = unique or None
        self.raw = raw
        self.data = codec.decode(raw) if codec is not BYTES else raw
        self._ws = ws
        self._gen = ws.generation
        self._finished = False
        self._t0 = 0.0  # when it started, kept only while jobs are logged (AsyncWorker._log_jobs)

    @property
    def server(self) -> str:
        """The address of the job server that gave this job."""
        return self._ws.link.address

    def __repr__(self) -> str:
        return f"<WorkerJob {_text(self.function)} handle={_text(self.handle)} unique={_text(self.unique)}>"

    def _send(self, packet: bytes, now: bool = True) -> None:
        loop = self._ws.worker._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() == self._ws.worker._thread_id:
            self._ws.send(self._gen, packet, now)
        else:
            loop.call_soon_threadsafe(self._ws.send, self._gen, packet, True)

    def send_status(self, numerator: int, denominator: int) -> None:
        """WORK_STATUS: NUMERATOR of DENOMINATOR done."""
        self._send(pack_req(T.WORK_STATUS, self.handle, str(int(numerator)).encode(),
                            str(int(denominator)).encode()))

    def send_data(self, data: str | bytes) -> None:
        """WORK_DATA: a partial result."""
        self._send(pack_req(T.WORK_DATA, self.handle, _b(data)))

    def send_warning(self, data: str | bytes) -> None:
        """WORK_WARNING."""
        self._send(pack_req(T.WORK_WARNING, self.handle, _b(data)))

    def fail(self) -> None:
        """Fail the job now (WORK_FAIL); what the handler returns afterwards is ignored."""
        if not self._finished:
            self._finished = True
            self._send(pack_req(T.WORK_FAIL, self.handle))


class _WServer:
    """The worker's state for one server."""

    __slots__ = ("worker", "link", "grabs", "sleeping", "empty", "generation", "lost_event", "jobs_done", "failing")

    def __init__(self, worker: AsyncWorker, address: str) -> None:
        self.worker = worker
        self.link = Link(address, self.packet, self.lost, ssl=worker.ssl, connect_timeout=worker.connect_timeout,
                         backoff=Backoff(maximum=worker.max_backoff), on_up=self.up)
        self.link.fast = self.fast
        self.grabs = 0
        self.sleeping = False
        self.empty = False
        self.generation = 0
        self.lost_event: asyncio.Event | None = None
        self.jobs_done = 0
        self.failing = False  # its connects fail (said once, at WARNING, until one works)

    def send(self, gen: int, packet: bytes, now: bool = False) -> None:
        if gen == self.generation and self.link.up:
            if now:
                self.link.send_now(packet)
            else:
                self.link.send(packet)

    def up(self, link: Link) -> None:
        self.generation += 1
        self.grabs = 0
        self.sleeping = False
        self.empty = False
        w = self.worker
        if w.client_id:
            link.send(pack_req(T.SET_CLIENT_ID, w.client_id))
        for name, (_, timeout) in w.functions.items():
            link.send(self._can_do(name, timeout))
        self.failing = False
        log.info("connected to %s", link.address)
        w._pump()

    @staticmethod
    def _can_do(name: bytes, timeout: float | None) -> bytes:
        if timeout:
            # gearmand (>= 1.1.19) reads the value as milliseconds
            return pack_req(T.CAN_DO_TIMEOUT, name, str(max(1000, int(timeout * 1000))).encode())
        return pack_req(T.CAN_DO, name)

    def fast(self, data: bytes) -> bool:
        """The hot path: a read that is exactly one JOB_ASSIGN_UNIQ for the grab we sent, of a function run inline.
        Parse it by hand, run the handler, and write its WORK_COMPLETE and the next GRAB_JOB_UNIQ in one write.
        False (nothing done): anything else, for the parser and packet()."""
        if data[:8] != _ASSIGN_UNIQ_HEAD or self.empty or len(data) - 12 != int.from_bytes(data[8:12], "big"):
            return False
        w = self.worker
        args = data[12:].split(b"\0", 3)
        if len(args) != 4 or w._stopping or w._max_jobs is not None or w._log_jobs:
            return False
        handle, function, unique, raw = args
        handler = w._inline.get(function)
        if handler is None:
            return False
        self.grabs -= 1
        w._grabs -= 1
        w._started += 1
        w._running += 1
        job = WorkerJob(self, handle, function, unique, raw, w.codec)
        link = self.link
        try:
            result = handler(job)
        except BaseException as exc:  # noqa: BLE001 - reported to the client
            self._finish_slow(job, None, exc)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            return True
        if job._finished or type(result) is not bytes or w.codec is not BYTES or w._stopping:
            self._finish_slow(job, result, None)
            return True
        job._finished = True
        w._running -= 1
        w.jobs_done += 1
        self.jobs_done += 1
        size = (len(handle) + 1 + len(result)).to_bytes(4, "big")
        # one slot, one server: the slot this job held is the one free slot, so ask for the next job with it
        if w._solo and not self.sleeping and link.write_direct(
                b"".join((_COMPLETE_HEAD, size, handle, b"\0", result, _GRAB))):
            self.grabs = 1
            w._grabs = 1
            if w.busy_poll:
                w._poll_until = perf_counter() + w.busy_poll
                if not w._polling:
                    w._polling = True
                    w._loop.call_soon(w._poll)  # type: ignore[union-attr]
            return True
        link.batch(self._answer, b"".join((_COMPLETE_HEAD, size, handle, b"\0", result)))
        return True

    def _answer(self, packet: bytes) -> None:
        """Send a job's WORK_COMPLETE and ask for as many jobs as there are free slots (in a Link.batch)."""
        self.link.send(packet)
        self.worker._pump()

    def _finish_slow(self, job: WorkerJob, result: Any, exc: BaseException | None) -> None:
        """The fast path's job ends the general way: its packets (and the next grab) in one write."""
        self.link.batch(self.worker._finish, job, result, exc)

    def packet(self, ptype: int, args: tuple) -> None:
        w = self.worker
        if ptype == _JOB_ASSIGN_UNIQ and not self.empty:  # the hot path: a job for the grab we sent
            self.grabs -= 1
            w._grabs -= 1
            if w._start(self, args[0], args[1], args[2], args[3]):
                w._pump()
        elif ptype in _ASSIGN:
            self.grabs -= 1
            w._grabs -= 1
            if ptype == _JOB_ASSIGN_UNIQ:
                handle, function, unique, data = args
            elif ptype == _JOB_ASSIGN:
                handle, function, data = args
                unique = None
            else:
                handle, function, unique, _reducer, data = args
            if self.empty and self.grabs == 0 and not w._stopping and self.link.up:
                # a NO_JOB came back for an earlier grab: the queue ran dry, so sleep until NOOP
                self.sleeping = True
                self.link.send(_PRE_SLEEP)
            if w._start(self, handle, function, unique, data):
                w._pump()
        elif ptype == _NO_JOB:
            self.grabs -= 1
            w._grabs -= 1
            self.empty = True
            if self.grabs == 0 and not w._stopping:
                self.sleeping = True
                self.link.send(_PRE_SLEEP)
            w._pump()
        elif ptype == _NOOP:
            if self.sleeping or self.empty:
                self.sleeping = False
                self.empty = False
                w._pump()
        elif ptype == _ERROR:
            log.debug("server %s: ERROR %s: %s", self.link.address, _text(args[0]), _text(args[1]))

    def lost(self, link: Link, exc: BaseException | None) -> None:
        w = self.worker
        w._grabs -= self.grabs
        self.grabs = 0
        self.sleeping = False
        self.generation += 1  # results of jobs from the old connection are dropped; the server requeued them
        if self.lost_event is not None:
            self.lost_event.set()
        if not w._stopping:
            log.info("lost connection to %s (%s); reconnecting", link.address, error_text(exc))
        w._pump()  # the grabs it had are free slots again: ask the other servers
        w._check_done()


class AsyncWorker:
    """An asyncio Gearman worker for one or more job servers.

    ``concurrency``: jobs run at once (and the most it ever asks for). ``threads``: run plain-function
    handlers in a thread pool (default: when concurrency > 1). ``codec`` decodes ``job.data`` and
    encodes results. ``client_id`` is sent with SET_CLIENT_ID (shown by the admin ``workers`` command).
    ``busy_poll`` (seconds, default 50 µs; 0: off): one job at a time from one server, after a job's result
    and the next grab are written the loop keeps polling this long instead of sleeping, so a job the server
    hands out at once is read without a sleep and a wake-up; it costs up to that much CPU per job.
    """

    def __init__(
        self,
        servers: str | Sequence[str] | None = None,
        *,
        concurrency: int = 1,
        threads: bool | None = None,
        codec: Codec = BYTES,
        ssl: _ssl.SSLContext | None = None,
        client_id: str | bytes | None = None,
        connect_timeout: float = 5.0,
        max_backoff: float = 5.0,
        busy_poll: float = 50e-6,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.addresses = normalize_servers(servers)
        self.concurrency = concurrency
        self.threads = concurrency > 1 if threads is None else threads
        self.codec = codec
        self.ssl = ssl
        self.client_id = _b(client_id) if client_id else None
        self.connect_timeout = connect_timeout
        self.max_backoff = max_backoff
        self.functions: dict[bytes, tuple[Handler, float | None]] = {}
        self._is_async: dict[bytes, bool] = {}
        #: the plain-function handlers that run inline on the loop (no thread pool): the fast path's functions
        self._inline: dict[bytes, Callable[[WorkerJob], Any]] = {}
        #: one job at a time from one server: the fast path asks for the next job along with each result
        self._solo = concurrency == 1 and len(self.addresses) == 1
        self.servers = [_WServer(self, a) for a in self.addresses]
        self.jobs_done = 0
        self._rr = 0
        self._grabs = 0
        self._running = 0
        self._started = 0
        self._max_jobs: int | None = None
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id = 0
        self._done: asyncio.Future | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task] = set()
        self._stop_requested = False
        #: seconds the loop keeps polling (not sleeping) after the fast path asked for the next job; 0: never
        self.busy_poll = busy_poll
        self._poll_until = 0.0
        self._polling = False
        #: log each job at DEBUG (set by work() from the logger's level; such jobs skip the fast path)
        self._log_jobs = False

    def _poll(self) -> None:
        """Busy poll: while this callback is queued the loop polls its sockets without sleeping, so the next
        job, when the server answers within busy_poll, is read without a sleep and a wake-up."""
        if perf_counter() < self._poll_until and not self._stopping:
            self._loop.call_soon(self._poll)  # type: ignore[union-attr]
        else:
            self._polling = False

    # -- registration ----------------------------------------------------------------------------------------
    def register(self, function: str | bytes, handler: Handler | None = None, *,
                 timeout: float | None = None) -> Any:
        """Register HANDLER for FUNCTION (usable as a decorator). TIMEOUT seconds: CAN_DO_TIMEOUT."""
        if handler is None:
            return lambda h: self.register(function, h, timeout=timeout) or h
        name = _b(function)
        if not name:
            raise ValueError("a function name cannot be empty")
        self.functions[name] = (handler, timeout)
        self._is_async[name] = inspect.iscoroutinefunction(handler)
        if self._is_async[name] or self.threads:
            self._inline.pop(name, None)
        else:
            self._inline[name] = handler
        for ws in self.servers:
            if ws.link.up:
                ws.link.send(ws._can_do(name, timeout))
                ws.empty = False
        if self._loop is not None:
            self._pump()
        return None

    def unregister(self, function: str | bytes) -> None:
        name = _b(function)
        self.functions.pop(name, None)
        self._inline.pop(name, None)
        for ws in self.servers:
            if ws.link.up:
                ws.link.send(pack_req(T.CANT_DO, name))

    # -- running ---------------------------------------------------------------------------------------------
    async def work(self, max_jobs: int | None = None, *, handle_signals: bool = False) -> int:
        """Serve jobs until stop() (or MAX_JOBS jobs were run); return how many jobs were run."""
        if not self.functions:
            raise ValueError("no function registered")
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        self._log_jobs = log.isEnabledFor(logging.DEBUG)
        self._max_jobs = max_jobs
        self._stopping = False
        self._done = self._loop.create_future()
        if self._stop_requested:
            self._stop_requested = False
            self._done = None
            return self.jobs_done
        if self.threads:
            self._pool = concurrent.futures.ThreadPoolExecutor(self.concurrency, thread_name_prefix="geartrain-job")
        installed = {}
        if handle_signals:
            # A Python-level handler (not loop.add_signal_handler) runs even while an inline handler holds
            # the loop, so no further job is grabbed after the current one.
            loop = self._loop

            def on_signal(signum: int, frame: object) -> None:
                if self._stopping and signum == signal.SIGINT:
                    raise KeyboardInterrupt  # a second Ctrl-C: stop now (the server requeues what was running)
                self._stopping = True
                loop.call_soon_threadsafe(self.stop)

            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    installed[sig] = signal.signal(sig, on_signal)
                except (ValueError, OSError):  # not the main thread
                    pass
        keepers = [self._loop.create_task(self._keep_connected(ws)) for ws in self.servers]
        try:
            await self._done
        finally:
            for task in keepers:
                task.cancel()
            for ws in self.servers:
                ws.link.close()
            await asyncio.gather(*keepers, return_exceptions=True)
            for sig, previous in installed.items():
                signal.signal(sig, previous)
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            await asyncio.sleep(0)
            self._done = None
        return self.jobs_done

    def stop(self) -> None:
        """Graceful stop: finish the jobs already assigned, send their results, then return from work()."""
        if self._loop is None or self._done is None:
            self._stop_requested = True  # work() has not started yet: it will return at once
            return
        if threading.get_ident() != self._thread_id:
            try:
                self._loop.call_soon_threadsafe(self.stop)
            except RuntimeError:  # the loop is already closed
                pass
            return
        if not self._stopping:
            log.info("stopping: %d job(s) running", self._running)
        self._stopping = True
        self._check_done()

    async def _keep_connected(self, ws: _WServer) -> None:
        link = ws.link
        while not self._stopping:
            if not link.up:
                delay = link.retry_in()
                if delay:
                    await asyncio.sleep(delay)
                    continue
                try:
                    await link.connect()
                except OSError as exc:
                    if not ws.failing:
                        ws.failing = True
                        log.warning("cannot connect to %s (%s); retrying until it is up", link.address,
                                    error_text(exc))
                    else:
                        log.debug("connect to %s failed: %s", link.address, error_text(exc))
                    continue
            ws.lost_event = asyncio.Event()
            if link.up:
                await ws.lost_event.wait()

    def _check_done(self) -> None:
        if self._stopping and self._running == 0 and self._grabs <= 0 and self._done and not self._done.done():
            for ws in self.servers:
                ws.link.flush()
            self._done.set_result(None)

    def _pump(self) -> None:
        """Ask servers for jobs while there are free slots (round-robin over awake connections)."""
        if self._stopping:
            self._check_done()
            return
        free = self.concurrency - self._running - self._grabs
        if self._max_jobs is not None:
            free = min(free, self._max_jobs - self._started - self._grabs)
        if free <= 0:
            return
        servers = self.servers
        n = len(servers)
        if n == 1:  # one server: no round-robin to do
            ws = servers[0]
            if ws.link.up and not ws.sleeping and not ws.empty:
                ws.grabs += free
                self._grabs += free
                for _ in range(free):
                    ws.link.send(_GRAB)
            return
        while free > 0:
            sent = False
            for k in range(n):
                ws = servers[(self._rr + k) % n]
                if ws.link.up and not ws.sleeping and not ws.empty:
                    ws.grabs += 1
                    self._grabs += 1
                    ws.link.send(_GRAB)
                    free -= 1
                    sent = True
                    self._rr = (self._rr + k + 1) % n
                    break
            if not sent:
                return

    def _start(self, ws: _WServer, handle: bytes, function: bytes, unique: bytes | None, data: bytes) -> bool:
        """Run or launch the job; True when it is still running (so the caller should pump for free slots)."""
        entry = self.functions.get(function)
        self._started += 1
        self._running += 1
        job = WorkerJob(ws, handle, function, unique, data, self.codec)
        if self._log_jobs:
            job._t0 = perf_counter()
            log.debug("job %s (%s, %d bytes) started", _text(handle), _text(function), len(data))
        if entry is None:  # we no longer do this function
            self._finish(job, None, WorkFailed("function not registered"))
            return False
        handler = entry[0]
        if self._is_async[function]:
            task = self._loop.create_task(self._run_async(job, handler))  # type: ignore[union-attr]
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return True
        elif self._pool is not None:
            fut = self._loop.run_in_executor(self._pool, handler, job)  # type: ignore[union-attr]
            fut.add_done_callback(lambda f: self._finish(job, None if f.exception() else f.result(), f.exception()))
            return True
        else:
            try:
                result = handler(job)
            except BaseException as exc:  # noqa: BLE001 - reported to the client
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    self._finish(job, None, exc)
                    raise
                self._finish(job, None, exc)
            else:
                self._finish(job, result, None)
            return False

    async def _run_async(self, job: WorkerJob, handler: Handler) -> None:
        try:
            result = await handler(job)  # type: ignore[misc]
        except asyncio.CancelledError as exc:
            self._finish(job, None, exc)
            raise
        except BaseException as exc:  # noqa: BLE001 - reported to the client
            self._finish(job, None, exc)
        else:
            self._finish(job, result, None)

    def _finish(self, job: WorkerJob, result: Any, exc: BaseException | None) -> None:
        ws = job._ws
        if self._log_jobs:
            how = ("failed" if job._finished or isinstance(exc, WorkFailed) else "done" if exc is None
                   else f"raised {type(exc).__name__}")
            log.debug("job %s (%s) %s in %.1f ms", _text(job.handle), _text(job.function), how,
                      (perf_counter() - job._t0) * 1000)
        if not job._finished:
            job._finished = True
            if exc is None:
                if type(result) is bytes and self.codec is BYTES:
                    payload = result
                else:
                    try:
                        payload = self.codec.encode(result if result is not None else b"")
                    except Exception as enc_exc:  # noqa: BLE001
                        exc = enc_exc
                if exc is None:
                    ws.send(job._gen, pack_req(_WORK_COMPLETE, job.handle, payload))
            if exc is not None:
                if isinstance(exc, WorkFailed):
                    log.info("job %s (%s) failed%s", _text(job.handle), _text(job.function),
                             f": {exc}" if str(exc) else "")
                else:
                    text = f"{type(exc).__name__}: {exc}"
                    ws.send(job._gen, pack_req(T.WORK_EXCEPTION, job.handle, text.encode(errors="replace")))
                    if not isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                        # once per job, with the traceback: where the worker's function went wrong
                        log.warning("job %s (%s) raised %s", _text(job.handle), _text(job.function), text,
                                    exc_info=exc)
                ws.send(job._gen, pack_req(T.WORK_FAIL, job.handle))
        self._running -= 1
        self.jobs_done += 1
        ws.jobs_done += 1
        if self._max_jobs is not None and self.jobs_done >= self._max_jobs:
            self._stopping = True
        self._pump()
        if self._stopping:
            self._check_done()


class Worker:
    """A blocking Gearman worker: an AsyncWorker driven on a private event loop in the calling thread.

    Same arguments as AsyncWorker. ``work()`` blocks until ``stop()`` (from any thread), SIGTERM/SIGINT
    (in the main thread), or ``max_jobs`` jobs.
    """

    def __init__(self, servers: str | Sequence[str] | None = None, **kwargs: Any) -> None:
        self.aworker = AsyncWorker(servers, **kwargs)

    def register(self, function: str | bytes, handler: Handler | None = None, *,
                 timeout: float | None = None) -> Any:
        return self.aworker.register(function, handler, timeout=timeout)

    def unregister(self, function: str | bytes) -> None:
        self.aworker.unregister(function)

    @property
    def jobs_done(self) -> int:
        return self.aworker.jobs_done

    def work(self, max_jobs: int | None = None, *, handle_signals: bool | None = None) -> int:
        if handle_signals is None:
            handle_signals = threading.current_thread() is threading.main_thread()
        loop = new_event_loop()
        try:
            return loop.run_until_complete(self.aworker.work(max_jobs, handle_signals=handle_signals))
        finally:
            loop.close()

    def stop(self) -> None:
        self.aworker.stop()
