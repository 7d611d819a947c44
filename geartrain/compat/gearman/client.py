"""GearmanClient: submit jobs, wait for them, ask for their status (python-gearman 2.x API).

Per connection the client keeps a FIFO of the requests that await a direct reply (JOB_CREATED for a
submission, STATUS_RES for a status query, OPTION_RES for the ``exceptions`` option): the server answers
each connection's requests in order, so an ERROR goes to whatever is at the head. Foreground requests
are looked up by handle for WORK_* packets only until they finish, through weak references; nothing
is kept after that (no growing maps: python-gearman 2.0.2 leaked every request).

Each new connection first sends ``OPTION_REQ exceptions`` so WORK_EXCEPTION reaches the client
(``request.exception``, state JOB_FAILED) instead of being turned into WORK_FAIL by the server.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

from ...protocol.packets import HIGH, LOW, NORMAL, T, submit_type
from .connection import GearmanConnection
from .connection_manager import GearmanConnectionManager
from .constants import (
    JOB_COMPLETE,
    JOB_CREATED,
    JOB_FAILED,
    JOB_PENDING,
    JOB_UNKNOWN,
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_NONE,
)
from .errors import ConnectionError, ExceededConnectionAttempts, InvalidClientState, ServerUnavailable
from .job import GearmanJobRequest
from .util import Stopwatch, to_bytes, to_str, unlist

log = logging.getLogger("geartrain.compat.gearman.client")

#: Random bytes in a generated unique (hex encoded: 32 characters, under gearmand's 64-byte limit).
RANDOM_UNIQUE_BYTES = 16

_PRIORITIES = {PRIORITY_NONE: NORMAL, PRIORITY_LOW: LOW, PRIORITY_HIGH: HIGH}
_SUBMIT, _STATUS, _OPTION = "submit", "status", "option"


def _expect_sequence(value: Any, what: str) -> None:
    if not isinstance(value, (list, tuple, set)):
        raise TypeError(f"Expected multiple {what}, received 1?")


class _ClientConnectionState:
    """What one client connection waits for.

    Requests waiting for a reply are held strongly (replies come promptly); requests waiting for a
    job's result are held weakly, so a request the program dropped (say, after a timeout) is freed;
    its empty entry is swept once the map has doubled since the last sweep.
    """

    __slots__ = ("awaiting", "by_handle", "_sweep_at")

    def __init__(self) -> None:
        self.awaiting: collections.deque[tuple[str, GearmanJobRequest | None]] = collections.deque()
        self.by_handle: dict[bytes, weakref.WeakSet[GearmanJobRequest]] = {}
        self._sweep_at = 64

    def watch(self, handle: bytes, request: GearmanJobRequest) -> None:
        watchers = self.by_handle.get(handle)
        if watchers is None:
            if len(self.by_handle) >= self._sweep_at:
                for key in [k for k, v in self.by_handle.items() if not v]:
                    del self.by_handle[key]
                self._sweep_at = max(64, 2 * len(self.by_handle))
            watchers = self.by_handle[handle] = weakref.WeakSet()
        watchers.add(request)


class GearmanClient(GearmanConnectionManager):
    """Submit jobs to one or more Gearman servers (each request goes to a random reachable server)."""

    #: Ask the server for WORK_EXCEPTION packets on every new connection.
    forward_exceptions = True

    def __init__(self, host_list: Iterable[Any] | None = None, random_unique_bytes: int = RANDOM_UNIQUE_BYTES) -> None:
        super().__init__(host_list=host_list)
        self.random_unique_bytes = random_unique_bytes

    # -- submitting ----------------------------------------------------------------------------------------------

    def submit_job(self, task: Any, data: Any, unique: Any = None, priority: Any = PRIORITY_NONE,
                   background: bool = False, wait_until_complete: bool = True, max_retries: int = 0,
                   poll_timeout: float | None = None) -> GearmanJobRequest:
        """Submit one job; by default block until it completes. Returns its GearmanJobRequest."""
        job_info = dict(task=task, data=data, unique=unique, priority=priority)
        requests = self.submit_multiple_jobs([job_info], background=background,
                                             wait_until_complete=wait_until_complete, max_retries=max_retries,
                                             poll_timeout=poll_timeout)
        return unlist(requests)

    def submit_multiple_jobs(self, jobs_to_submit: Sequence[dict[str, Any]], background: bool = False,
                             wait_until_complete: bool = True, max_retries: int = 0,
                             poll_timeout: float | None = None) -> Sequence[GearmanJobRequest]:
        """Submit dicts of {'task', 'data', 'unique', 'priority'} (and optionally 'background') at once."""
        _expect_sequence(jobs_to_submit, "jobs")
        requests = [self._create_request_from_dictionary(info, background=background, max_retries=max_retries)
                    for info in jobs_to_submit]
        return self.submit_multiple_requests(requests, wait_until_complete=wait_until_complete,
                                             poll_timeout=poll_timeout)

    def submit_multiple_requests(self, job_requests: Sequence[GearmanJobRequest], wait_until_complete: bool = True,
                                 poll_timeout: float | None = None) -> Sequence[GearmanJobRequest]:
        """Send GearmanJobRequests, wait until accepted and optionally until complete, within POLL_TIMEOUT.

        Check each request afterwards: ``timed_out`` or ``state == JOB_UNKNOWN`` may be true.
        """
        _expect_sequence(job_requests, "job requests")
        stopwatch = Stopwatch(poll_timeout)
        processed = self.wait_until_jobs_accepted(job_requests, poll_timeout=stopwatch.get_time_remaining())
        remaining = stopwatch.get_time_remaining()
        if wait_until_complete and remaining != 0.0:
            processed = self.wait_until_jobs_completed(processed, poll_timeout=remaining)
        return processed

    def wait_until_jobs_accepted(self, job_requests: Sequence[GearmanJobRequest],
                                 poll_timeout: float | None = None) -> Sequence[GearmanJobRequest]:
        """Send what is not sent yet (or lost its connection) and wait until every request has a handle."""
        _expect_sequence(job_requests, "job requests")

        def continue_while_jobs_pending(any_activity: bool) -> bool:
            for request in job_requests:
                if request.state == JOB_UNKNOWN:
                    self.send_job_request(request)
            return any(request.state == JOB_PENDING for request in job_requests)

        self.poll_connections_until_stopped(self._connections_of(job_requests), continue_while_jobs_pending,
                                            timeout=poll_timeout)
        for request in job_requests:
            request.timed_out = request.state == JOB_PENDING
        return job_requests

    def wait_until_jobs_completed(self, job_requests: Sequence[GearmanJobRequest],
                                  poll_timeout: float | None = None) -> Sequence[GearmanJobRequest]:
        """Wait until every request is complete (or failed, or lost its connection); mark the rest timed out."""
        _expect_sequence(job_requests, "job requests")

        def continue_while_jobs_incomplete(any_activity: bool) -> bool:
            return any(not r.complete and r.state != JOB_UNKNOWN for r in job_requests)

        self.poll_connections_until_stopped(self._connections_of(job_requests), continue_while_jobs_incomplete,
                                            timeout=poll_timeout)
        for request in job_requests:
            request.timed_out = not request.complete and request.state != JOB_UNKNOWN
        return job_requests

    # -- status --------------------------------------------------------------------------------------------------

    def get_job_status(self, current_request: GearmanJobRequest,
                       poll_timeout: float | None = None) -> GearmanJobRequest:
        """Ask the request's server for its job's status (``request.status``)."""
        return unlist(self.get_job_statuses([current_request], poll_timeout=poll_timeout))

    def get_job_statuses(self, job_requests: Sequence[GearmanJobRequest],
                         poll_timeout: float | None = None) -> Sequence[GearmanJobRequest]:
        """Ask for the status of several requests at once (GET_STATUS by handle, on the server that has it)."""
        _expect_sequence(job_requests, "job requests")
        for request in job_requests:
            request._status_seq_asked = request._status_seq
            connection = request.job.connection
            if connection is None or request.job.handle is None:
                raise InvalidClientState(f"{request!r} was never accepted by a server")
            try:
                self.establish_connection(connection)
            except ConnectionError:
                request.state = JOB_UNKNOWN
                continue
            state = self._state(connection)
            handle = to_bytes(request.job.handle)
            state.awaiting.append((_STATUS, request))
            if not request.background and request.state == JOB_CREATED:
                state.watch(handle, request)
            connection.send_command(T.GET_STATUS, handle)
        return self.wait_until_job_statuses_received(job_requests, poll_timeout=poll_timeout)

    def wait_until_job_statuses_received(self, job_requests: Sequence[GearmanJobRequest],
                                         poll_timeout: float | None = None) -> Sequence[GearmanJobRequest]:
        """Wait until every request got its STATUS_RES (or lost its connection)."""
        _expect_sequence(job_requests, "job requests")

        def not_updated(request: GearmanJobRequest) -> bool:
            return request._status_seq == request._status_seq_asked

        def continue_while_status_not_updated(any_activity: bool) -> bool:
            return any(not_updated(r) and r.state != JOB_UNKNOWN for r in job_requests)

        self.poll_connections_until_stopped(self._connections_of(job_requests), continue_while_status_not_updated,
                                            timeout=poll_timeout)
        for request in job_requests:
            request.timed_out = not_updated(request) and request.state != JOB_UNKNOWN
        return job_requests

    def _connections_of(self, job_requests: Sequence[GearmanJobRequest]) -> list[GearmanConnection]:
        """This client's connections, plus any other one a request is bound to (a request built by hand)."""
        connections = list(self.connection_list)
        for request in job_requests:
            connection = request.job.connection
            if isinstance(connection, GearmanConnection) and not any(c is connection for c in connections):
                connections.append(connection)
        return connections

    # -- sending -------------------------------------------------------------------------------------------------

    def _create_request_from_dictionary(self, job_info: dict[str, Any], background: bool = False,
                                        max_retries: int = 0) -> GearmanJobRequest:
        unique = job_info.get("unique")
        if unique is None or unique == "" or unique == b"":
            unique = os.urandom(self.random_unique_bytes).hex()
        job = self.job_class(connection=None, handle=None, task=job_info["task"], unique=unique,
                             data=job_info["data"])
        return self.job_request_class(job, initial_priority=job_info.get("priority", PRIORITY_NONE),
                                      background=job_info.get("background", background),
                                      max_attempts=max_retries + 1)

    def establish_request_connection(self, current_request: GearmanJobRequest) -> GearmanConnection:
        """A live connection for the request: its servers in a shuffled order, skipping those that fail."""
        rotation: collections.deque[GearmanConnection] | None = getattr(current_request, "_rotation", None)
        if not rotation:
            shuffled = list(self.connection_list)
            random.shuffle(shuffled)
            rotation = collections.deque(shuffled)
            current_request._rotation = rotation  # type: ignore[attr-defined]
        failed = 0
        chosen = None
        for connection in rotation:
            try:
                chosen = self.establish_connection(connection)
                break
            except ConnectionError:
                failed += 1
        if chosen is None:
            raise ServerUnavailable(f"Found no valid connections: {self.connection_list!r}")
        rotation.rotate(-failed)
        return chosen

    def send_job_request(self, current_request: GearmanJobRequest) -> GearmanJobRequest:
        """Send one request (state must be JOB_UNKNOWN) to a server; counts a connection attempt."""
        if current_request.connection_attempts >= current_request.max_connection_attempts:
            raise ExceededConnectionAttempts(f"Exceeded {current_request.max_connection_attempts} connection "
                                             f"attempt(s) :: {current_request!r}")
        if current_request.state != JOB_UNKNOWN:
            raise InvalidClientState(f"Expected {current_request!r} to be in state {JOB_UNKNOWN!r}")
        connection = self.establish_request_connection(current_request)
        job = current_request.job
        job.connection = connection
        job.handle = None
        current_request.connection_attempts += 1
        current_request.timed_out = False
        priority = _PRIORITIES.get(current_request.priority)
        if priority is None:
            raise ValueError(f"unknown priority {current_request.priority!r}")
        ptype = submit_type(priority, bool(current_request.background))
        payload = self.encode_data(job.data)
        self._state(connection).awaiting.append((_SUBMIT, current_request))
        connection.send_command(ptype, to_bytes(job.task), to_bytes(job.unique), payload)
        current_request.state = JOB_PENDING
        return current_request

    # -- receiving -----------------------------------------------------------------------------------------------

    def _state(self, connection: GearmanConnection) -> _ClientConnectionState:
        state = connection.state
        if not isinstance(state, _ClientConnectionState):
            raise ConnectionError(f"{connection!r} is not connected")
        return state

    def on_connect(self, connection: GearmanConnection) -> None:
        state = _ClientConnectionState()
        connection.state = state
        if self.forward_exceptions:
            state.awaiting.append((_OPTION, None))
            connection.send_command(T.OPTION_REQ, b"exceptions")

    def on_connection_lost(self, connection: GearmanConnection) -> None:
        state = connection.state
        if not isinstance(state, _ClientConnectionState):
            return
        for _kind, request in state.awaiting:
            if request is not None and not request.complete:
                request.state = JOB_UNKNOWN
        for watchers in state.by_handle.values():
            for request in watchers:
                if not request.complete:
                    request.state = JOB_UNKNOWN
        state.awaiting.clear()
        state.by_handle.clear()

    def _pop_awaiting(self, state: _ClientConnectionState, kind: str, packet: str) -> GearmanJobRequest | None:
        if not state.awaiting:
            raise InvalidClientState(f"Received {packet} with nothing awaiting a reply")
        got, request = state.awaiting.popleft()
        if got != kind:
            raise InvalidClientState(f"Received {packet} while awaiting the reply to a {got} request")
        return request

    def handle_packet(self, connection: GearmanConnection, ptype: int, args: tuple[bytes, ...]) -> None:
        state = self._state(connection)
        if ptype == T.JOB_CREATED:
            request = self._pop_awaiting(state, _SUBMIT, "JOB_CREATED")
            assert request is not None
            handle = args[0]
            request.job.handle = to_str(handle)
            request.state = JOB_CREATED
            if not request.background:
                state.watch(handle, request)
        elif ptype in (T.WORK_DATA, T.WORK_WARNING):
            watchers = list(state.by_handle.get(args[0], ()))
            if watchers:
                data = self.decode_data(args[1])
                for request in watchers:
                    (request.data_updates if ptype == T.WORK_DATA else request.warning_updates).append(data)
        elif ptype == T.WORK_STATUS:
            now = time.time()
            for request in state.by_handle.get(args[0], ()):
                request.status = {"handle": to_str(args[0]), "known": True, "running": True,
                                  "numerator": _number(args[1]), "denominator": _number(args[2]),
                                  "time_received": now}
        elif ptype in (T.WORK_COMPLETE, T.WORK_FAIL, T.WORK_EXCEPTION):
            # gearmand turns WORK_EXCEPTION into WORK_FAIL for clients without the option and keeps the
            # NUL that ended the handle ("H:x:1\0"): a handle never contains NUL, so strip it.
            handle = args[0].rstrip(b"\0") if ptype == T.WORK_FAIL else args[0]
            watchers = list(state.by_handle.pop(handle, ()))
            data = self.decode_data(args[1]) if ptype != T.WORK_FAIL and watchers else None
            for request in watchers:
                if ptype == T.WORK_COMPLETE:
                    request.result = data
                    request.state = JOB_COMPLETE
                else:
                    if ptype == T.WORK_EXCEPTION:
                        request.exception = data
                    request.state = JOB_FAILED
        elif ptype == T.STATUS_RES:
            request = self._pop_awaiting(state, _STATUS, "STATUS_RES")
            assert request is not None
            handle, known, running, numerator, denominator = args
            request.status = {"handle": to_str(handle), "known": known == b"1", "running": running == b"1",
                              "numerator": _number(numerator), "denominator": _number(denominator),
                              "time_received": time.time()}
            request._status_seq += 1
            if known != b"1":
                state.by_handle.pop(handle, None)
        elif ptype == T.OPTION_RES:
            self._pop_awaiting(state, _OPTION, "OPTION_RES")
        elif ptype == T.ERROR:
            self._handle_error_packet(connection, state, args[0], args[1])
        elif ptype == T.NOOP:
            pass
        else:
            log.error("%r: unexpected packet %s", connection, T(ptype).name if ptype > 0 else ptype)

    def _handle_error_packet(self, connection: GearmanConnection, state: _ClientConnectionState, code: bytes,
                             text: bytes) -> None:
        if not state.awaiting:
            self.on_gearman_error(code, text)
            return
        kind, request = state.awaiting.popleft()
        if kind == _OPTION:
            log.warning("%r does not support the exceptions option (%s: %s); WORK_EXCEPTION arrives as WORK_FAIL",
                        connection, to_str(code), to_str(text))
        elif kind == _SUBMIT and request is not None:
            request.error = (code, text)
            request.state = JOB_FAILED
            self.on_gearman_error(code, text)
        elif kind == _STATUS and request is not None:
            request.status = {"handle": request.job.handle, "known": False, "running": False, "numerator": 0,
                              "denominator": 0, "time_received": time.time()}
            request._status_seq += 1
            self.on_gearman_error(code, text)


def _number(value: bytes) -> int | float:
    """A status numerator/denominator (gearmand treats them as integers; keep a float if one was sent)."""
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return 0
