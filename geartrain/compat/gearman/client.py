"""GearmanClient: submit jobs, wait for them, ask for their status (python-gearman 2.x API).

Per connection the client keeps a ``protocol.session.ClientSession``, as geartrain's own client does: a
FIFO of the requests that await a direct reply (JOB_CREATED for a submission, STATUS_RES for a status
query, OPTION_RES for the ``exceptions`` option; the server answers each connection's requests in order,
so an ERROR goes to whatever is at the head), and the foreground requests looked up by handle for WORK_*
packets only until they finish, through weak references; nothing is kept after that (no growing maps:
python-gearman 2.0.2 leaked every request).

Each new connection first sends ``OPTION_REQ exceptions`` so WORK_EXCEPTION reaches the client
(``request.exception``, state JOB_FAILED) instead of being turned into WORK_FAIL by the server.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import random
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

from ...protocol.packets import HIGH, LOW, NORMAL, T, submit_type
from ...protocol.session import ClientSession
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
_WORK_COMPLETE = int(T.WORK_COMPLETE)
_WORK = frozenset(int(t) for t in (T.WORK_COMPLETE, T.WORK_DATA, T.WORK_STATUS, T.WORK_WARNING, T.WORK_FAIL,
                                   T.WORK_EXCEPTION))


def _expect_sequence(value: Any, what: str) -> None:
    if not isinstance(value, (list, tuple, set)):
        raise TypeError(f"Expected multiple {what}, received 1?")


class _ClientConnectionState(ClientSession):
    """What one client connection waits for: a ClientSession (protocol/session.py) that watches jobs weakly.

    Requests waiting for a reply are held strongly (replies come promptly); requests waiting for a
    job's result are held weakly, so a request the program dropped (say, after a timeout) is freed;
    its empty entry is swept once the map has doubled since the last sweep.
    """

    __slots__ = ()

    def __init__(self, stray: Any) -> None:
        super().__init__(stray, weak=True)

    @property
    def awaiting(self) -> Any:
        return self.pending

    @property
    def by_handle(self) -> dict[bytes, Any]:
        return self.jobs


class _Awaiting:
    """A request waiting for its direct reply on a connection (a submission, a status query, the option)."""

    __slots__ = ("client", "request")
    kind = ""

    def __init__(self, client: GearmanClient, request: GearmanJobRequest | None) -> None:
        self.client = client
        self.request = request

    def _unexpected(self, packet: str) -> None:
        raise InvalidClientState(f"Received {packet} while awaiting the reply to a {self.kind} request")

    def on_created(self, handle: bytes) -> Any:
        self._unexpected("JOB_CREATED")

    def on_reply(self, ptype: int, args: tuple) -> None:
        self._unexpected(T(ptype).name)


class _Submit(_Awaiting):
    __slots__ = ()
    kind = _SUBMIT

    def on_created(self, handle: bytes) -> Any:
        request = self.request
        assert request is not None
        request.job.handle = to_str(handle)
        request.state = JOB_CREATED
        return None if request.background else _watcher(self.client, request)

    def on_error(self, code: bytes, text: bytes) -> None:
        request = self.request
        assert request is not None
        request.error = (code, text)
        request.state = JOB_FAILED
        self.client.on_gearman_error(code, text)


class _Status(_Awaiting):
    __slots__ = ()
    kind = _STATUS

    def on_reply(self, ptype: int, args: tuple) -> None:
        if ptype != T.STATUS_RES:
            self._unexpected(T(ptype).name)
        request = self.request
        assert request is not None
        handle, known, running, numerator, denominator = args
        request.status = {"handle": to_str(handle), "known": known == b"1", "running": running == b"1",
                          "numerator": _number(numerator), "denominator": _number(denominator),
                          "time_received": time.time()}
        request._status_seq += 1

    def on_error(self, code: bytes, text: bytes) -> None:
        request = self.request
        assert request is not None
        request.status = {"handle": request.job.handle, "known": False, "running": False, "numerator": 0,
                          "denominator": 0, "time_received": time.time()}
        request._status_seq += 1
        self.client.on_gearman_error(code, text)


class _Option(_Awaiting):
    __slots__ = ("connection",)
    kind = _OPTION

    def __init__(self, client: GearmanClient, connection: GearmanConnection) -> None:
        super().__init__(client, None)
        self.connection = connection

    def on_reply(self, ptype: int, args: tuple) -> None:
        if ptype != T.OPTION_RES:
            self._unexpected(T(ptype).name)

    def on_error(self, code: bytes, text: bytes) -> None:
        log.warning("%r does not support the exceptions option (%s: %s); WORK_EXCEPTION arrives as WORK_FAIL",
                    self.connection, to_str(code), to_str(text))


class _Watcher:
    """Hands a job's WORK_* packets to its request, which it references weakly (the request keeps it alive)."""

    __slots__ = ("client", "ref", "__weakref__")

    def __init__(self, client: GearmanClient, request: GearmanJobRequest) -> None:
        self.client = client
        self.ref = weakref.ref(request)

    def on_complete(self, data: bytes) -> None:
        self.on_work(_WORK_COMPLETE, (b"", data))

    def on_work(self, ptype: int, args: tuple) -> bool:
        request = self.ref()
        if request is None:
            return True
        if ptype == T.WORK_STATUS:
            request.status = {"handle": to_str(args[0]), "known": True, "running": True,
                              "numerator": _number(args[1]), "denominator": _number(args[2]),
                              "time_received": time.time()}
            return False
        if ptype == T.WORK_FAIL:
            request.state = JOB_FAILED
            return True
        data = self.client.decode_data(args[1])
        if ptype == T.WORK_DATA:
            request.data_updates.append(data)
            return False
        if ptype == T.WORK_WARNING:
            request.warning_updates.append(data)
            return False
        if ptype == T.WORK_COMPLETE:
            request.result = data
            request.state = JOB_COMPLETE
        else:  # WORK_EXCEPTION
            request.exception = data
            request.state = JOB_FAILED
        return True


def _watcher(client: GearmanClient, request: GearmanJobRequest) -> _Watcher:
    """REQUEST's watcher, made once and kept by the request, so it lives exactly as long as the request."""
    watcher = getattr(request, "_watcher", None)
    if watcher is None:
        watcher = request._watcher = _Watcher(client, request)  # type: ignore[attr-defined]
    return watcher


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
            state.expect(_Status(self, request))
            if not request.background and request.state == JOB_CREATED:
                state.watch(handle, _watcher(self, request))
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
        self._state(connection).expect(_Submit(self, current_request))
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
        state = _ClientConnectionState(functools.partial(self._stray, connection))
        connection.state = state
        if self.forward_exceptions:
            state.expect(_Option(self, connection))
            connection.send_command(T.OPTION_REQ, b"exceptions")

    def on_connection_lost(self, connection: GearmanConnection) -> None:
        state = connection.state
        if not isinstance(state, _ClientConnectionState):
            return
        pending, watchers = state.close()
        requests = [a.request for a in pending] + [w.ref() for w in watchers]
        for request in requests:
            if request is not None and not request.complete:
                request.state = JOB_UNKNOWN

    def handle_packet(self, connection: GearmanConnection, ptype: int, args: tuple[bytes, ...]) -> None:
        self._state(connection).receive(ptype, args)

    def _stray(self, connection: GearmanConnection, ptype: int, args: tuple[bytes, ...]) -> None:
        """A packet that answers nothing this connection waits for."""
        if ptype == T.ERROR:
            self.on_gearman_error(args[0], args[1])
        elif ptype in (T.JOB_CREATED, T.STATUS_RES, T.OPTION_RES):
            raise InvalidClientState(f"Received {T(ptype).name} with nothing awaiting a reply")
        elif ptype not in _WORK and ptype != T.NOOP:  # WORK_* of a request nobody holds any more: dropped
            log.error("%r: unexpected packet %s", connection, T(ptype).name if ptype > 0 else ptype)


def _number(value: bytes) -> int | float:
    """A status numerator/denominator (gearmand treats them as integers; keep a float if one was sent)."""
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return 0
