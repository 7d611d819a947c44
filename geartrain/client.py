"""Gearman clients: ``AsyncClient`` (asyncio) and ``Client`` (blocking), one protocol core.

``AsyncClient`` does all the work. ``Client`` runs an ``AsyncClient`` on a private event loop in a
background thread and waits for it, so there is one implementation of the protocol, not two.

Several servers: a job with a unique goes to the server its unique hashes to (``HashRing``, the
same on every client given the same list); a job without one goes round-robin. A server that is
down is skipped until its backoff ends. A job whose connection drops before JOB_CREATED is sent to
the next server; one that drops after it fails with ``JobLost`` (sending it again could run it twice).
Replies are matched to requests in order per connection (gearmand answers each connection FIFO) by a
``protocol.session.ClientSession`` per server; a ``Job`` is the session's request object for its submission.

A background submission is acknowledged or raises: ``submit_job(..., background=True)`` returns once the
server answered JOB_CREATED (as libgearman's ``do_background`` and python-gearman do), and ``close()``
waits (up to ``close_timeout``) for the JOB_CREATED of every background submission still in flight (tasks
that submit and are not awaited) and raises ``JobsNotCreated`` for those that were not acknowledged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ssl as _ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any

from .adminclient import admin_command
from .codecs import BYTES, Codec, to_bytes
from .errors import (
    ConnectionLost,
    JobLost,
    JobsNotCreated,
    JobTimeout,
    JobUnknown,
    NoServerAvailable,
    ServerError,
)
from .hashring import HashRing
from .job import NORMAL, Job, JobEvent, JobStatus, Task, _int, priority_of
from .outcome import JobResult, parse_result
from .protocol import pack_req
from .protocol.packets import T, submit_type
from .protocol.session import ClientSession
from .transport import Backoff, Link, error_text, new_event_loop, normalize_servers

__all__ = ["AsyncClient", "Client", "Job", "JobEvent", "JobResult", "JobStatus", "Task"]

_OPT_EXCEPTIONS = pack_req(T.OPTION_REQ, b"exceptions")
#: AsyncClient.run batches replies (its linger) only with at least this many jobs in flight
_LINGER_WINDOW = 64
#: AsyncClient.result polls a job it waits for after this many seconds, then half again as long each time, up to
#: RESULT_POLL_MAX
RESULT_POLL_FIRST = 0.05
RESULT_POLL_MAX = 1.0
#: _SUBMIT[priority][background] -> the submit packet's type
_SUBMIT = tuple((int(submit_type(p, False)), int(submit_type(p, True))) for p in range(3))


def _b(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


class _Reply:
    """A request other than a submission (OPTION_REQ, GET_STATUS, ECHO_REQ): its reply ends ``future``."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future) -> None:
        self.future = future

    def on_created(self, handle: bytes) -> None:  # a reply out of order: the stream is confused
        self._end(ConnectionLost("unexpected JOB_CREATED"))

    def on_reply(self, ptype: int, args: tuple) -> None:
        if not self.future.done():
            self.future.set_result((ptype, args))

    def on_error(self, code: bytes, text: bytes) -> None:
        self._end(ServerError(code, text))

    def _end(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)
            self.future.exception()  # retrieved: whoever waits still gets it


class _Server:
    """The client's state for one server: its Link and its ClientSession (requests awaiting replies, jobs)."""

    __slots__ = ("client", "link", "address", "session")

    def __init__(self, client: AsyncClient, address: str) -> None:
        self.client = client
        self.session = ClientSession()
        self.link = Link(address, self.session.receive, self.lost, ssl=client.ssl,
                         connect_timeout=client.connect_timeout, backoff=Backoff(maximum=client.max_backoff),
                         on_up=self.up)
        self.address = self.link.address

    def up(self, link: Link) -> None:
        if self.client.exceptions:
            self.request(_OPT_EXCEPTIONS).add_done_callback(_ignore)
        if self.client.client_id:
            link.send(pack_req(T.SET_CLIENT_ID, self.client.client_id))

    def request(self, packet: bytes) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self.session.pending.append(_Reply(fut))
        self.link.send(packet)
        return fut

    def submit(self, job: Job) -> None:
        self.session.pending.append(job)
        job._tried += 1
        job.server = self.address
        if job.when is not None:
            pkt = pack_req(T.SUBMIT_JOB_EPOCH, job.function, job.unique or b"", str(job.when).encode(), job.data)
        else:
            pkt = pack_req(_SUBMIT[job.priority][job.background], job.function, job.unique or b"", job.data)
        self.link.send(pkt)

    def lost(self, link: Link, exc: BaseException | None) -> None:
        pending, running = self.session.close()
        client = self.client
        for item in pending:
            if type(item) is Job:
                if not item.done() and not client._closing:
                    client._spawn(client._dispatch(item))  # not created here: safe to send elsewhere
                else:
                    item._fail(ConnectionLost(f"connection to {link.address} lost"))
            else:
                item._end(ConnectionLost(f"connection to {link.address} lost"))
        for job in running:
            job._fail(JobLost(job.handle or b"", link.address))


def _ignore(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()


class AsyncClient:
    """An asyncio Gearman client for one or more job servers.

    ``servers``: "host:port", "h1:p1,h2", or a list of them (default 127.0.0.1:4730).
    ``codec``: how payloads and results are encoded (default bytes; ``geartrain.codecs.JSON`` for objects).
    ``timeout``: default seconds to wait for a result (None: forever).
    ``wait_for_server``: how long a submission waits for some server to come up; by default (0) it raises
    NoServerAvailable as soon as every server was tried and none could be reached (a refused connection is
    known at once, an unanswered one after ``connect_timeout``).
    ``close_timeout``: how long ``close()`` (leaving ``async with``) waits for the JOB_CREATED of background
    submissions still in flight before it gives up on them and raises ``JobsNotCreated``.
    """

    def __init__(
        self,
        servers: str | Sequence[str] | None = None,
        *,
        codec: Codec = BYTES,
        ssl: _ssl.SSLContext | None = None,
        timeout: float | None = None,
        connect_timeout: float = 5.0,
        wait_for_server: float = 0.0,
        max_backoff: float = 10.0,
        client_id: str | bytes | None = None,
        exceptions: bool = True,
        close_timeout: float = 10.0,
    ) -> None:
        self.addresses = normalize_servers(servers)
        self.codec = codec
        self.ssl = ssl
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.wait_for_server = wait_for_server
        self.max_backoff = max_backoff
        self.client_id = _b(client_id) if client_id else None
        self.exceptions = exceptions
        self.close_timeout = close_timeout
        self.servers = {a: _Server(self, a) for a in self.addresses}
        self._list = list(self.servers.values())
        self.ring = HashRing(self.addresses)
        self._rr = 0
        self._closing = False
        self._closed = False
        self._tasks: set[asyncio.Task] = set()
        #: jobs on their way to a server (_dispatch: waiting for one to come up), not yet in a pending queue
        self._dispatching: set[Job] = set()
        self._names: dict[str | bytes, bytes] = {}

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        try:
            await self.close()
        except JobsNotCreated as err:
            if exc is None:
                raise
            exc.add_note(str(err))  # the block's own error goes on; say what else went wrong

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- choosing a server -----------------------------------------------------------------------------------
    def _order(self, unique: bytes | None) -> list[_Server]:
        if unique:
            return [self.servers[a] for a in self.ring.walk(unique)]
        n = len(self._list)
        i = self._rr % n
        self._rr = i + 1
        return self._list[i:] + self._list[:i]

    async def _server_for(self, unique: bytes | None) -> _Server:
        """The server to use now (connecting it if needed); waits up to wait_for_server for one to come up."""
        deadline = None
        while True:
            if self._closing:
                raise NoServerAvailable("client is closed")
            order = self._order(unique)
            if not unique:
                # any server will do: take one that is up; probe those due for a retry in the background
                chosen = None
                for st in order:
                    if st.link.up:
                        chosen = chosen or st
                    elif st.link.retry_in() == 0 and not st.link.connecting:
                        self._spawn(self._probe(st.link))
                if chosen is not None:
                    return chosen
            tried = set()
            for st in order:
                link = st.link
                if link.up:
                    return st
                if link.retry_in() > 0:
                    continue  # backing off: another server may do
                tried.add(st)
                if await self._try(link):
                    return st
            now = time.monotonic()
            if deadline is None:
                deadline = now + self.wait_for_server
            if now >= deadline:
                # about to give up: the servers skipped for their backoff get one try first (one may be back)
                for st in order:
                    if st not in tried and await self._try(st.link):
                        return st
                errors = "; ".join(f"{st.link.address}: {error_text(st.link.last_error)}" for st in order)
                raise NoServerAvailable(f"cannot connect to any job server ({errors})")
            wait = min(st.link.retry_in() for st in order)
            await asyncio.sleep(min(max(wait, 0.01), deadline - now))

    @staticmethod
    async def _try(link: Link) -> bool:
        """Connect LINK if it can be; True when it is up."""
        try:
            await link.connect()
        except OSError:
            return False
        return link.up

    @staticmethod
    async def _probe(link: Link) -> None:
        try:
            await link.connect()
        except OSError:
            pass

    async def _dispatch(self, job: Job) -> None:
        if job._tried >= 2 * len(self._list) + 2:  # every server dropped it: do not bounce it forever
            job._fail(ConnectionLost(f"connections dropped {job._tried} times before the job was accepted"))
            return
        self._dispatching.add(job)
        try:
            st = await self._server_for(job.unique)
        except NoServerAvailable as exc:
            job._fail(exc)
            return
        finally:
            self._dispatching.discard(job)
        st.submit(job)

    # -- submitting ------------------------------------------------------------------------------------------
    async def submit_job(
        self,
        function: str | bytes,
        data: Any = b"",
        *,
        unique: str | bytes | None = None,
        priority: int | str | None = None,
        background: bool = False,
        when: int | float | None = None,
        on_data: Callable[[Job, bytes], None] | None = None,
        on_warning: Callable[[Job, bytes], None] | None = None,
        on_status: Callable[[Job, int, int], None] | None = None,
    ) -> Job:
        """Send a job and return its Job: a foreground job at once (await it for the result; ``await
        job.created()`` for the handle), a background job once the server accepted it (JOB_CREATED: ``.handle``
        is set), raising ServerError if the server refused it and NoServerAvailable or ConnectionLost if no
        server took it (JobTimeout after the client's ``timeout``). To send many background jobs without a round
        trip each, use ``submit_many`` or ``run``.

        ``when``: run at this Unix time (SUBMIT_JOB_EPOCH; always a background job).
        """
        job = self._new_job(function, data, unique, priority, background, when, on_data, on_warning, on_status)
        if not self._send_fast(job):
            await self._dispatch(job)
        if job.background:
            await job.created(self.timeout)
        return job

    def _new_job(self, function: str | bytes, data: Any, unique: str | bytes | None, priority: int | str | None,
                 background: bool, when: int | float | None, on_data: Callable | None = None,
                 on_warning: Callable | None = None, on_status: Callable | None = None) -> Job:
        uniq = _b(unique) if unique is not None else None
        if when is not None:
            background = True
            when = int(when)
        fname = self._names.get(function)
        if fname is None:
            fname = _b(function)
            if len(self._names) < 4096:
                self._names[function] = fname
        payload = data if type(data) is bytes and self.codec is BYTES else self.codec.encode(data)
        prio = NORMAL if priority is None else priority_of(priority)
        return Job(fname, payload, uniq, prio, background, when, self.codec, on_data, on_warning, on_status)

    def _send_fast(self, job: Job) -> bool:
        """Send JOB now if the server it goes to is connected; False when it needs the slow path (_dispatch)."""
        uniq = job.unique
        if uniq:
            st = self.servers[self.ring.node(uniq)]
        else:
            lst = self._list
            i = self._rr
            if i >= len(lst):
                i = 0
            self._rr = i + 1
            st = lst[i]
        if st.link.up and not self._closing:
            st.submit(job)
            return True
        return False

    async def submit(self, function: str | bytes, data: Any = b"", *, timeout: float | None = None,
                     **kwargs: Any) -> Any:
        """Submit a foreground job and return its result (see submit_job for the options)."""
        job = await self.submit_job(function, data, **kwargs)
        return await job.result(self.timeout if timeout is None else timeout)

    async def submit_background(self, function: str | bytes, data: Any = b"", **kwargs: Any) -> Job:
        """Submit a background job; returns its Job once the server accepted it (``.handle``, ``.server``)."""
        return await self.submit_job(function, data, background=True, **kwargs)

    async def submit_many(self, jobs: Iterable[tuple | dict | Task], **kwargs: Any) -> list[Job]:
        """Submit many jobs at once (tuples (function, data), dicts of submit_job's arguments, or Tasks); KWARGS are
        submit_job's arguments for every job (a dict's own and a Task's fields win).

        Every job is sent before any reply is awaited (one write for all of them), then the background ones are
        awaited together: it returns once each got its JOB_CREATED, and raises ``JobsNotCreated`` (its ``jobs``:
        those the servers refused or never acknowledged, each with its ``error``) if any did not.
        """
        out = []
        for spec in jobs:
            if isinstance(spec, Task):
                args = {**kwargs, "function": spec.function, "data": spec.data, "unique": spec.unique,
                        "priority": spec.priority, "background": spec.background, "when": spec.when}
            elif isinstance(spec, dict):
                args = {**kwargs, **spec}
            else:
                args = {**kwargs, **dict(zip(("function", "data"), spec, strict=False))}
            job = self._new_job(args.pop("function"), args.pop("data", b""), args.pop("unique", None),
                                args.pop("priority", None), args.pop("background", False), args.pop("when", None),
                                **args)
            if not self._send_fast(job):
                await self._dispatch(job)  # in order: the first waits for the connection, the rest go fast
            out.append(job)
        waiting = [job for job in out if job.background and not job.done()]
        if waiting:
            await _wait_created(waiting, self.timeout)
        failed = [job for job in out if job.background and job.handle is None]
        if failed:
            for job in failed:
                if not job.done():
                    job._fail(JobTimeout(f"no JOB_CREATED within {self.timeout}s"))
            raise JobsNotCreated(failed)
        return out

    async def run(self, tasks: Iterable[Task], *, timeout: float | None = None, max_in_flight: int | None = None,
                  on_done: Callable[[Task], None] | None = None, linger: float = 0.0003) -> list[Task]:
        """Run every task concurrently (at most max_in_flight at a time); set each task's result or error.

        No coroutine, semaphore or future per task: a finished job's callback (run as its reply is read) submits
        the next task, so its packet leaves in the same write as the other replies' follow-ups.

        ``linger``: with at least 64 jobs in flight and more to come, a read that ended fewer than 1/8 of them
        makes the client wait this long (seconds) before it reads again, so the next replies are handled, and
        their follow-up submits written, in one batch (the server still has most of the window queued, so its
        workers stay busy). It costs a job up to ``linger`` of latency; in exchange one wake-up, read and write
        serve many jobs instead of one or two each. If jobs end so fast that 3/4 of the window ends during one
        wait, waiting stops for a while. 0: read every reply as it comes. (The default, 0.3 ms: 1 ms drained
        the window of 100 jobs far enough to idle the workers, 66.8k jobs/s through gearmand against 74-76k.)
        """
        tasks = list(tasks)
        total = len(tasks)
        if not total:
            return tasks
        timeout = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        limit = max_in_flight or total
        all_done = loop.create_future()
        by_job: dict[Job, Task] = {}
        nxt = 0  # the next task to start
        stopped = False  # all done, timed out or cancelled: start no more
        finished = 0  # jobs ended so far
        new_job = self._new_job
        send_fast = self._send_fast

        def start() -> None:
            nonlocal nxt, stopped
            while len(by_job) < limit and nxt < total and not stopped:
                task = tasks[nxt]
                nxt += 1
                try:
                    job = new_job(task.function, task.data, task.unique, task.priority, task.background, task.when)
                except Exception as exc:  # noqa: BLE001 - reported on the task
                    task.error = exc
                    _report(task)
                    continue
                by_job[job] = task
                job._notify = finish
                if not send_fast(job):
                    self._spawn(self._dispatch(job))
            if not by_job and nxt >= total and not stopped:
                stopped = True
                all_done.set_result(None)

        def _report(task: Task) -> None:
            if on_done is not None:
                try:
                    on_done(task)
                except Exception as exc:  # noqa: BLE001 - a callback's bug must not break the connection
                    loop.call_exception_handler({"message": "exception in AsyncClient.run on_done callback",
                                                 "exception": exc})

        def finish(job: Job) -> None:
            nonlocal finished
            task = by_job.pop(job, None)
            if task is None:
                return
            finished += 1
            if job._error is not None:
                task.error = job._error
            else:
                res = job._result
                task.result = res if job.background or job.codec is BYTES else job.codec.decode(res)
            task.handle = job.handle
            if on_done is not None:
                _report(task)
            start()

        def expire() -> None:
            nonlocal stopped
            if not stopped:
                stopped = True
                all_done.set_result(None)

        # Link.after_read hook: how long to wait before the next read (see linger above)
        seen = 0  # `finished` at the end of the previous read
        waited = False  # the previous read was followed by a wait
        calm = 0  # reads to come without waiting (the window drained during a wait)
        few = limit // 8

        def after_read() -> float:
            nonlocal seen, waited, calm
            ended = finished - seen
            seen = finished
            if waited and ended >= limit * 3 // 4:
                calm = 64
            waited = False
            if calm:
                calm -= 1
            elif ended < few and nxt < total and not stopped:
                waited = True
                return linger
            return 0.0

        links = []
        if linger > 0 and limit >= _LINGER_WINDOW and total > limit:
            links = [st.link for st in self._list if st.link.after_read is None]  # not those of another run
            for link in links:
                link.after_read = after_read
        start()
        timer = None if timeout is None else loop.call_later(timeout, expire)
        try:
            await asyncio.shield(all_done)
        finally:
            if timer is not None:
                timer.cancel()
            expire()  # cancelled: start no more tasks
            for job in by_job:
                job._notify = None
            for link in links:
                if link.after_read is after_read:
                    link.after_read = None
        if by_job or nxt < total:
            for task in tasks:
                if task.error is None and task.result is None:  # a background task's result is its handle
                    task.error = JobTimeout(f"task not done within {timeout}s")
        return tasks

    # -- status and other requests ------------------------------------------------------------------------
    async def _ask(self, st: _Server, packet: bytes) -> tuple[int, tuple]:
        if not st.link.up:
            await st.link.connect()
        return await st.request(packet)

    async def get_status(self, handle: str | bytes | Job, server: str | None = None) -> JobStatus:
        """The status of a job by handle (or Job). Without a server, every server is asked until one knows it."""
        if isinstance(handle, Job):
            server = server or handle.server
            handle = handle.handle or b""
        h = _b(handle)
        order = [self.servers[normalize_servers(server)[0]]] if server else self._list
        status = JobStatus(False, False, 0, 0, handle=h)
        for st in order:
            try:
                _, a = await self._ask(st, pack_req(T.GET_STATUS, h))
            except (OSError, ConnectionLost):
                if server:
                    raise
                continue
            status = JobStatus(a[1] == b"1", a[2] == b"1", _int(a[3]), _int(a[4]), handle=a[0],
                               server=st.link.address)
            if status.known:
                return status
        return status

    async def get_status_unique(self, unique: str | bytes) -> JobStatus:
        """The status of a job by unique: asks its own server first, then the others."""
        u = _b(unique)
        status = JobStatus(False, False, 0, 0, unique=u)
        for st in self._order(u):
            try:
                _, a = await self._ask(st, pack_req(T.GET_STATUS_UNIQUE, u))
            except (OSError, ConnectionLost):
                continue
            status = JobStatus(a[1] == b"1", a[2] == b"1", _int(a[3]), _int(a[4]), unique=a[0],
                               clients=_int(a[5]) if len(a) > 5 else None, server=st.link.address)
            if status.known:
                return status
        return status

    async def echo(self, data: str | bytes = b"ping", server: str | None = None) -> bytes:
        """ECHO_REQ round trip to one server (the first by default)."""
        st = self.servers[normalize_servers(server)[0]] if server else self._list[0]
        _, a = await self._ask(st, pack_req(T.ECHO_REQ, _b(data)))
        return a[0]

    def _unacknowledged(self) -> list[Job]:
        """Background jobs sent or on their way to a server that have no JOB_CREATED (nor an error) yet."""
        out = [job for job in self._dispatching if job.background and not job.done()]
        for st in self._list:
            out += [item for item in st.session.pending
                    if type(item) is Job and item.background and not item.done()]
        return out

    # -- what outlives a job (geartrain's admin command `result`) --------------------------------------------------
    async def result(self, job: str | bytes | Job, *, wait: float | None = None, server: str | None = None,
                     on_poll: Callable[[JobResult], None] | None = None) -> JobResult:
        """How a job stands, or how it ended if the server keeps its outcome (a background job of a function whose
        policy has keep=SECONDS), by handle or unique (or a Job). Asked with geartrain's admin command ``result``
        over a connection of its own, so nothing changes on the client's wire (the C gearmand answers it with
        ServerError UNKNOWN_COMMAND).

        ``wait``: seconds to wait for the job to end, asking again after 0.05 s, then half again as long each time
        up to 1 s; None or 0 answers at once. A job not over when the wait ends comes back as it stands (``done``
        False). ``on_poll`` is called with each answer. Without ``server`` (or the Job's), every server is asked
        until one knows the job (a unique's own server first), and only that one afterwards. Raises JobUnknown if
        none knows it (it never was, or it ended and its outcome is not kept)."""
        if isinstance(job, Job):
            server = server or job.server
            key = job.handle or job.unique or b""
        else:
            key = _b(job)
        try:
            line = "result " + key.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{key!r} is not UTF-8: the admin protocol cannot ask for it") from None
        if not key or len(line.split()) != 2:
            raise ValueError(f"{key!r}: a handle or unique with white space cannot be asked for over the admin "
                             "protocol")
        loop = asyncio.get_running_loop()
        order = [normalize_servers(server)[0]] if server else [st.link.address for st in self._order(key)]
        deadline = loop.time() + wait if wait else None
        interval = RESULT_POLL_FIRST
        seen: JobResult | None = None
        while True:
            found, problems = None, []
            for address in order:
                reply = await loop.run_in_executor(None, partial(admin_command, address, line,
                                                                 timeout=self.connect_timeout, ssl=self.ssl))
                try:
                    if reply.error and not reply.raw:
                        raise NoServerAvailable(f"{address}: {reply.error}")
                    got = parse_result(reply.raw, address)  # an ERR reply (gearmand's) raises ServerError
                except (NoServerAvailable, ServerError) as exc:
                    problems.append(exc)
                    continue
                if got.state != "unknown":
                    found, order = got, [address]
                    break
            if found is None:
                said = key.decode(errors="replace")
                if seen is not None:
                    raise JobUnknown(f"job {said} ended on {seen.server} and its outcome is not kept (keep= in its "
                                     "function's policy keeps a background job's)")
                if len(problems) == len(order):  # no server could say: the first that answered ERR says why
                    raise next((p for p in problems if isinstance(p, ServerError)), problems[0])
                raise JobUnknown(f"no server knows job {said}" +
                                 (f" ({'; '.join(map(str, problems))})" if problems else ""))
            seen = found
            if on_poll is not None:
                on_poll(found)
            left = deadline - loop.time() if deadline is not None else 0.0
            if found.done or left <= 0:
                return found
            await asyncio.sleep(min(interval, left))
            interval = min(interval * 1.5, RESULT_POLL_MAX)

    async def close(self) -> None:
        """Send what is buffered, wait (up to ``close_timeout``) for the JOB_CREATED of every background job still
        in flight, then close the connections. Raises ``JobsNotCreated`` for background jobs that were refused
        or not acknowledged in time (foreground jobs still running are left: the servers drop them)."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.close_timeout
        await asyncio.sleep(0)  # tasks created just before close() make their submissions now
        seen: dict[Job, None] = {}
        while True:  # submissions made meanwhile (by tasks still running) are waited for too
            waiting = self._unacknowledged()
            if not waiting:
                break
            seen.update(dict.fromkeys(waiting))
            for st in self._list:
                st.link.flush()
            remaining = deadline - loop.time()
            if remaining <= 0 or not await _wait_created(waiting, remaining):
                break
        for job in self._unacknowledged():
            seen[job] = None
            job._fail(JobTimeout(f"no JOB_CREATED within {self.close_timeout}s of closing the client"))
        self._closing = True
        for st in self._list:
            st.link.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0)
        failed = [job for job in seen if job.handle is None]
        if failed:
            raise JobsNotCreated(failed)


async def _wait_created(jobs: list[Job], timeout: float | None) -> bool:
    """Wait until every job in JOBS got its JOB_CREATED or failed; False if TIMEOUT passed first."""
    _, pending = await asyncio.wait([job._created_waiter() for job in jobs], timeout=timeout)
    return not pending


class SyncJob:
    """A job from ``Client.submit_job``: ``result(timeout)`` waits; ``cancel()`` (any thread) ends that wait."""

    def __init__(self, client: Client, job: Job) -> None:
        self._client = client
        self.job = job
        self._waits: set[concurrent.futures.Future] = set()

    handle = property(lambda self: self.job.handle)
    server = property(lambda self: self.job.server)
    function = property(lambda self: self.job.function)
    unique = property(lambda self: self.job.unique)

    def done(self) -> bool:
        return self.job.done()

    def result(self, timeout: float | None = None) -> Any:
        return self._client._call(self.job.result(timeout), waits=self._waits)

    def cancel(self) -> None:
        """Make a waiting ``result()`` raise CancelledError (the job itself goes on)."""
        for w in list(self._waits):
            w.cancel()

    def events(self) -> Iterator[JobEvent]:
        agen = self.job.events()
        while True:
            try:
                yield self._client._call(agen.__anext__(), waits=self._waits)
            except StopAsyncIteration:
                return


class Client:
    """A blocking Gearman client: the AsyncClient on a private event loop in a background thread.

    Same arguments as AsyncClient. Callbacks (on_data, on_status, on_warning) run in that thread.
    """

    def __init__(self, servers: str | Sequence[str] | None = None, **kwargs: Any) -> None:
        self._loop = new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="geartrain-client", daemon=True)
        self._thread.start()
        self.aclient: AsyncClient = self._call(self._make(servers, kwargs))
        self.timeout = self.aclient.timeout

    @staticmethod
    async def _make(servers: Any, kwargs: dict) -> AsyncClient:
        return AsyncClient(servers, **kwargs)

    def _call(self, coro: Any, waits: set | None = None) -> Any:
        if self._loop.is_closed():
            coro.close()
            raise RuntimeError("client is closed")
        cf = asyncio.run_coroutine_threadsafe(coro, self._loop)
        if waits is not None:
            waits.add(cf)
        try:
            return cf.result()
        except BaseException:
            cf.cancel()  # Ctrl-C or cancel(): stop waiting, leave the job alone
            raise
        finally:
            if waits is not None:
                waits.discard(cf)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        try:
            self.close()
        except JobsNotCreated as err:
            if exc is None:
                raise
            exc.add_note(str(err))  # the block's own error goes on; say what else went wrong

    def submit(self, function: str | bytes, data: Any = b"", *, timeout: float | None = None, **kwargs: Any) -> Any:
        """Submit a foreground job and return its result."""
        return self._call(self.aclient.submit(function, data, timeout=timeout, **kwargs))

    def submit_job(self, function: str | bytes, data: Any = b"", **kwargs: Any) -> SyncJob:
        """Submit a job and return at once; ``.result(timeout)`` waits for it."""
        return SyncJob(self, self._call(self.aclient.submit_job(function, data, **kwargs)))

    def submit_background(self, function: str | bytes, data: Any = b"", **kwargs: Any) -> Job:
        """Submit a background job; returns its Job (``.handle``, ``.server``) once accepted."""
        return self._call(self.aclient.submit_background(function, data, **kwargs))

    def run(self, tasks: Iterable[Task], **kwargs: Any) -> list[Task]:
        """Run all tasks concurrently; set each one's ``result`` or ``error`` (see AsyncClient.run)."""
        return self._call(self.aclient.run(tasks, **kwargs))

    def get_status(self, handle: str | bytes | Job, server: str | None = None) -> JobStatus:
        return self._call(self.aclient.get_status(handle, server))

    def get_status_unique(self, unique: str | bytes) -> JobStatus:
        return self._call(self.aclient.get_status_unique(unique))

    def echo(self, data: str | bytes = b"ping", server: str | None = None) -> bytes:
        return self._call(self.aclient.echo(data, server))

    def result(self, job: str | bytes | Job, *, wait: float | None = None, server: str | None = None,
               on_poll: Callable[[JobResult], None] | None = None) -> JobResult:
        """How a job stands, or how it ended if its outcome is kept (see AsyncClient.result; on_poll runs in the
        client's thread)."""
        return self._call(self.aclient.result(job, wait=wait, server=server, on_poll=on_poll))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._call(self.aclient.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()


__all__ += ["SyncJob", "to_bytes"]
