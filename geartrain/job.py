"""Client-side job objects: what was submitted (Task) and how it is going (Job, JobEvent, JobStatus)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from .errors import JobException, JobFailed, JobTimeout, ServerError
from .protocol.packets import T

HIGH, NORMAL, LOW = 0, 1, 2
_WORK_COMPLETE, _WORK_DATA, _WORK_STATUS = int(T.WORK_COMPLETE), int(T.WORK_DATA), int(T.WORK_STATUS)
_WORK_WARNING, _WORK_FAIL, _WORK_EXCEPTION = int(T.WORK_WARNING), int(T.WORK_FAIL), int(T.WORK_EXCEPTION)
_PRIORITIES = {"high": HIGH, "normal": NORMAL, "low": LOW, HIGH: HIGH, NORMAL: NORMAL, LOW: LOW, None: NORMAL}


def priority_of(value: int | str | None) -> int:
    try:
        return _PRIORITIES[value.lower() if isinstance(value, str) else value]
    except KeyError:
        raise ValueError(f"priority must be high, normal or low, not {value!r}") from None


@dataclass(frozen=True, slots=True)
class JobEvent:
    """Something a running job sent: kind is data, warning, status, complete, fail or exception.

    ``data`` is the payload (bytes; for ``status`` a (numerator, denominator) tuple of ints).
    """

    kind: str
    data: Any


@dataclass(frozen=True, slots=True)
class JobStatus:
    """The server's answer to GET_STATUS / GET_STATUS_UNIQUE."""

    known: bool
    running: bool
    numerator: int
    denominator: int
    handle: bytes | None = None
    unique: bytes | None = None
    clients: int | None = None
    server: str | None = None

    @property
    def percent(self) -> float | None:
        return 100.0 * self.numerator / self.denominator if self.denominator else None


def _int(b: bytes) -> int:
    try:
        return int(b)
    except ValueError:
        return 0


class Job:
    """One submitted job, as the client sees it. Await it (or ``result()``) for its result.

    A job keeps its outcome in two slots (``_result`` bytes, or ``_error``); a Future is made only when
    somebody waits for a job that has not ended, so ``AsyncClient.run`` (which is told by ``_notify``) makes
    none at all.
    """

    __slots__ = ("function", "data", "unique", "priority", "background", "when", "handle", "server", "numerator",
                 "denominator", "codec", "on_data", "on_warning", "on_status", "_created", "_done", "_result",
                 "_error", "_log", "_wake", "_tried", "_notify")

    def __init__(self, function: bytes, data: bytes, unique: bytes | None, priority: int, background: bool,
                 when: int | None, codec: Any, on_data: Callable | None = None, on_warning: Callable | None = None,
                 on_status: Callable | None = None) -> None:
        self.function = function
        self.data = data
        self.unique = unique
        self.priority = priority
        self.background = background
        self.when = when
        self.handle: bytes | None = None
        self.server: str | None = None
        self.numerator = 0
        self.denominator = 0
        self.codec = codec
        self.on_data = on_data
        self.on_warning = on_warning
        self.on_status = on_status
        self._created: asyncio.Future | None = None  # made only when someone waits for JOB_CREATED
        self._done: asyncio.Future | None = None  # made only when someone waits for the end (_waiter)
        self._result: bytes | None = None  # the result (WORK_COMPLETE's data; a background job's handle)
        self._error: BaseException | None = None
        self._log: list[JobEvent] | None = None
        self._wake: asyncio.Future | None = None
        self._tried = 0  # how many servers it was sent to
        self._notify: Callable[[Job], None] | None = None  # called at once when the job ends (AsyncClient.run)

    def __repr__(self) -> str:
        state = "done" if self.done() else ("created" if self.handle else "submitting")
        return f"<Job {self.function!r} handle={self.handle!r} {state}>"

    def __await__(self):  # noqa: ANN204
        return self.result().__await__()

    def done(self) -> bool:
        return self._result is not None or self._error is not None

    @property
    def error(self) -> BaseException | None:
        """The exception the job ended with (None while it runs, or when it completed)."""
        return self._error

    def _name(self) -> str:
        """The job as messages name it: ``job FUNCTION (HANDLE)``."""
        name = f"job {self.function.decode(errors='replace')}"
        return f"{name} ({self.handle.decode(errors='replace')})" if self.handle else name

    def _waiter(self) -> asyncio.Future:
        """The future that ends (with None) when the job does; made on first use."""
        fut = self._done
        if fut is None:
            fut = self._done = asyncio.get_running_loop().create_future()
            if self.done():
                fut.set_result(None)
        return fut

    def _outcome(self) -> bytes:
        """The raw result of an ended job, or raise its error."""
        if self._error is not None:
            raise self._error.with_traceback(None)  # each raise starts a fresh traceback, as Future.result() does
        return self._result  # type: ignore[return-value]

    def _created_waiter(self) -> asyncio.Future:
        """The future that ends when JOB_CREATED arrives (with the handle) or the job fails first; made on first use.
        Only for a job that has neither yet."""
        if self._created is None:
            self._created = asyncio.get_running_loop().create_future()
        return self._created

    async def created(self, timeout: float | None = None) -> bytes:
        """Wait for JOB_CREATED; return the handle."""
        if self.handle is not None:
            return self.handle
        if self.done():  # failed before it was created
            self._outcome()
        try:
            return await asyncio.wait_for(asyncio.shield(self._created_waiter()), timeout)
        except TimeoutError:
            raise JobTimeout(f"no JOB_CREATED within {timeout}s") from None

    async def result(self, timeout: float | None = None) -> Any:
        """Wait for the result (decoded by the client's codec). Raises JobFailed/JobException/JobTimeout.

        Cancelling this wait (or timing out) does not affect the job.
        """
        if not self.done():
            fut = self._waiter()
            if timeout is None:
                await asyncio.shield(fut)
            else:
                try:
                    await asyncio.wait_for(asyncio.shield(fut), timeout)
                except TimeoutError:
                    raise JobTimeout(f"{self._name()} not done within {timeout}s") from None
        return self.codec.decode(self._outcome())

    async def events(self) -> AsyncIterator[JobEvent]:
        """Every WORK_DATA/WARNING/STATUS this job sent (from the start), then its final event."""
        i = 0
        while True:
            log = self._log or []
            while i < len(log):
                ev = log[i]
                i += 1
                yield ev
            if self.done():
                if i < len(self._log or []):
                    continue  # more came in while the last event was being handled
                exc = self._error
                if exc is None:
                    yield JobEvent("complete", self._result)
                elif isinstance(exc, JobException):
                    yield JobEvent("exception", exc.data)
                elif isinstance(exc, JobFailed):
                    yield JobEvent("fail", b"")
                else:
                    raise exc
                return
            if self._wake is None or self._wake.done():
                self._wake = asyncio.get_running_loop().create_future()
            await asyncio.wait([self._wake, self._waiter()], return_when=asyncio.FIRST_COMPLETED)

    # -- called by the client core -------------------------------------------------------------------------
    def _event(self, ev: JobEvent) -> None:
        if self._log is None:
            self._log = []
        self._log.append(ev)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _complete(self, result: bytes) -> None:
        """End the job with RESULT (unless it has ended already)."""
        if self._result is None and self._error is None:
            self._result = result
            fut = self._done
            if fut is not None and not fut.done():
                fut.set_result(None)
            if self._notify is not None:
                self._notify(self)

    def _packet(self, ptype: int, args: tuple) -> bool:
        """Apply a WORK_* packet; True when it ended the job."""
        if ptype == _WORK_COMPLETE:
            self._complete(args[1])
            return True
        if ptype == _WORK_DATA:
            self._event(JobEvent("data", args[1]))
            if self.on_data:
                self.on_data(self, args[1])
        elif ptype == _WORK_STATUS:
            self.numerator, self.denominator = _int(args[1]), _int(args[2])
            self._event(JobEvent("status", (self.numerator, self.denominator)))
            if self.on_status:
                self.on_status(self, self.numerator, self.denominator)
        elif ptype == _WORK_WARNING:
            self._event(JobEvent("warning", args[1]))
            if self.on_warning:
                self.on_warning(self, args[1])
        elif ptype == _WORK_FAIL:
            self._fail(JobFailed(self.handle or b"", f"{self._name()} failed"))
            return True
        elif ptype == _WORK_EXCEPTION:
            self._fail(JobException(self.handle or b"", args[1]))
            return True
        return False

    # -- the ClientSession's request interface (see protocol/session.py) ----------------------------------------
    def on_created(self, handle: bytes) -> Job | None:
        """JOB_CREATED: a foreground job then waits for its WORK_* packets (returns itself)."""
        if self.background or self._created is not None:
            self._set_created(handle)
            return None if self.background else self
        self.handle = handle  # the common case: nobody waits for the handle itself
        return self

    def on_reply(self, ptype: int, args: tuple) -> None:
        """A reply that answers no submission: the stream is confused; the job stays unanswered."""

    def on_error(self, code: bytes, text: bytes) -> None:
        self._fail(ServerError(code, text))

    def _set_created(self, handle: bytes) -> None:
        self.handle = handle
        if self._created is not None and not self._created.done():
            self._created.set_result(handle)
        if self.background:
            self._complete(handle)

    def _fail(self, exc: BaseException) -> None:
        if self._created is not None and not self._created.done():
            self._created.set_exception(exc)
            self._created.exception()
        if self._result is None and self._error is None:
            self._error = exc
            fut = self._done
            if fut is not None and not fut.done():
                fut.set_result(None)  # the waiter only wakes; the error is raised from _error
            if self._notify is not None:
                self._notify(self)

    on_complete = _complete
    on_work = _packet


class Task:
    """A job to run with ``Client.run(tasks)`` (the seed's Taskset shape); afterwards ``result`` or ``error``."""

    __slots__ = ("function", "data", "unique", "priority", "background", "when", "result", "error", "handle")

    def __init__(self, function: str | bytes, data: Any = b"", *, unique: str | bytes | None = None,
                 priority: int | str | None = None, background: bool = False, when: int | None = None) -> None:
        self.function = function
        self.data = data
        self.unique = unique
        self.priority = priority
        self.background = background
        self.when = when
        self.result: Any = None
        self.error: BaseException | None = None
        self.handle: bytes | None = None

    def __repr__(self) -> str:
        return f"<Task {self.function!r} {self.data!r}>"

    @property
    def ok(self) -> bool:
        return self.error is None
