"""GearmanWorker: register tasks and run jobs (python-gearman 2.x API).

Wake-up protocol (the part python-gearman got wrong with gearmand 1.1, its issue #37): on connect the
worker announces its tasks and grabs at once; after each job it grabs again on the same connection;
only on NO_JOB does it send PRE_SLEEP, and a NOOP (which gearmand sends to sleeping workers when a job
arrives, or at once if PRE_SLEEP finds work waiting) marks the connection for another grab. A NOOP that
arrives while the worker is busy is remembered, never dropped. The worker holds at most one job at a
time (python-gearman's "job lock"), so at most one GRAB_JOB_UNIQ is outstanding across all servers;
between packets it sleeps in the poll loop, never polls the server.
"""

from __future__ import annotations

import logging
import random
import sys
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any

from ...protocol.packets import T
from .connection import GearmanConnection
from .connection_manager import GearmanConnectionManager
from .errors import ConnectionError, InvalidWorkerState
from .job import GearmanJob
from .util import to_bytes, to_str

log = logging.getLogger("geartrain.compat.gearman.worker")

#: Default seconds between calls of after_poll when nothing happens (and between reconnect attempts).
POLL_TIMEOUT_IN_SECONDS = 60.0

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


class _WorkerConnectionState:
    """Where one worker connection is in the grab / sleep cycle."""

    __slots__ = ("want_grab", "grabbing", "sleeping")

    def __init__(self) -> None:
        self.want_grab = True  # grab as soon as the job lock is free
        self.grabbing = False  # a GRAB_JOB_UNIQ is outstanding
        self.sleeping = False  # PRE_SLEEP sent, waiting for NOOP


class GearmanWorker(GearmanConnectionManager):
    """Take jobs from one or more Gearman servers and run the registered callbacks."""

    def __init__(self, host_list: Iterable[Any] | None = None) -> None:
        super().__init__(host_list=host_list)
        self.randomized_connections: list[GearmanConnection] | None = None
        self.worker_abilities: dict[Any, Callable[[GearmanWorker, GearmanJob], Any]] = {}
        self.worker_client_id: Any = None
        self._task_names: dict[bytes, Any] = {}
        self._lock_holder: GearmanConnection | None = None
        self._grab_cursor = 0
        self._jobs_done = 0
        self._current_job: GearmanJob | None = None
        self._job_finished = False

    # -- configuration -------------------------------------------------------------------------------------------

    def register_task(self, task: Any, callback_function: Callable[[GearmanWorker, GearmanJob], Any]) -> Any:
        """Run CALLBACK_FUNCTION(worker, job) for jobs of TASK; its return value is the job's result."""
        name = to_bytes(task)
        self.worker_abilities[task] = callback_function
        self._task_names[name] = task
        for connection in self._live_connections():
            connection.send_command(T.CAN_DO, name)
            connection.state.want_grab = True  # type: ignore[union-attr]
        return task

    def unregister_task(self, task: Any) -> Any:
        """Stop taking jobs of TASK."""
        name = to_bytes(task)
        self.worker_abilities.pop(task, None)
        self._task_names.pop(name, None)
        for connection in self._live_connections():
            connection.send_command(T.CANT_DO, name)
        return task

    def set_client_id(self, client_id: Any) -> Any:
        """Name this worker's connections (shown by the server's ``workers`` command)."""
        self.worker_client_id = client_id
        for connection in self._live_connections():
            connection.send_command(T.SET_CLIENT_ID, to_bytes(client_id))
        return client_id

    def _live_connections(self) -> list[GearmanConnection]:
        return [c for c in self.connection_list if c.connected and isinstance(c.state, _WorkerConnectionState)]

    # -- the work loop -------------------------------------------------------------------------------------------

    def work(self, poll_timeout: float | None = POLL_TIMEOUT_IN_SECONDS) -> None:
        """Take and run jobs until after_poll (or after_job) returns False.

        after_poll(any_activity) is called after every wake-up, and at least every POLL_TIMEOUT seconds;
        dead servers are reconnected every POLL_TIMEOUT seconds. Raises ServerUnavailable when no
        server can be reached.
        """
        jobs_seen = self._jobs_done

        def continue_while_connections_alive(any_activity: bool) -> bool:
            nonlocal jobs_seen
            keep_going = self.after_poll(any_activity)
            if self._jobs_done != jobs_seen:
                jobs_seen = self._jobs_done
                keep_going = self.after_job() and keep_going
            if keep_going:
                self._schedule_grab()
            return keep_going

        connections: list[GearmanConnection] = []
        continue_working = True
        try:
            while continue_working:
                connections = self.establish_worker_connections()
                continue_working = self.poll_connections_until_stopped(connections, continue_while_connections_alive,
                                                                       timeout=poll_timeout)
        finally:
            for connection in connections:
                if connection.connected:
                    self.flush_connection(connection, timeout=1.0)
                self.handle_error(connection)

    def establish_worker_connections(self) -> list[GearmanConnection]:
        """Connect to every server that is not connected (skipping those that fail); return the live ones."""
        self.randomized_connections = list(self.connection_list)
        random.shuffle(self.randomized_connections)
        live = []
        for connection in self.randomized_connections:
            try:
                live.append(self.establish_connection(connection))
            except ConnectionError as exc:
                log.debug("cannot connect: %s", exc)
        return live

    def after_poll(self, any_activity: bool) -> bool:
        """Called after each poll (activity or timeout). Return False to leave the work loop."""
        return True

    def after_job(self) -> bool:
        """Called after each job the work loop ran. Return False to leave the work loop."""
        return True

    def shutdown(self) -> None:
        self._lock_holder = None
        super().shutdown()

    def has_job_lock(self) -> bool:
        """True while a grab is outstanding or a job is running."""
        return self._lock_holder is not None

    def _schedule_grab(self) -> None:
        """If no grab is outstanding, send GRAB_JOB_UNIQ on a connection that may have work."""
        if self._lock_holder is not None:
            if self._lock_holder.connected:
                return
            self._lock_holder = None
        candidates = self.randomized_connections or self.connection_list
        count = len(candidates)
        for step in range(count):  # round robin, so one busy server cannot starve the others
            index = (self._grab_cursor + step) % count
            connection = candidates[index]
            state = connection.state
            if connection.connected and isinstance(state, _WorkerConnectionState) and state.want_grab:
                state.want_grab = False
                state.grabbing = True
                state.sleeping = False
                self._lock_holder = connection
                self._grab_cursor = index + 1
                connection.send_command(T.GRAB_JOB_UNIQ)
                return

    # -- connection events ---------------------------------------------------------------------------------------

    def on_connect(self, connection: GearmanConnection) -> None:
        connection.state = _WorkerConnectionState()
        if self.worker_client_id is not None:
            connection.send_command(T.SET_CLIENT_ID, to_bytes(self.worker_client_id))
        for name in self._task_names:
            connection.send_command(T.CAN_DO, name)

    def on_connection_lost(self, connection: GearmanConnection) -> None:
        if self._lock_holder is connection:
            self._lock_holder = None

    def handle_packet(self, connection: GearmanConnection, ptype: int, args: tuple[bytes, ...]) -> None:
        state = connection.state
        if not isinstance(state, _WorkerConnectionState):
            return
        if ptype == T.NOOP:
            state.want_grab = True
            state.sleeping = False
        elif ptype == T.NO_JOB:
            self._end_grab(connection, state)
            state.sleeping = True
            connection.send_command(T.PRE_SLEEP)
        elif ptype in (T.JOB_ASSIGN_UNIQ, T.JOB_ASSIGN):
            if ptype == T.JOB_ASSIGN_UNIQ:
                handle, name, unique, data = args
            else:
                (handle, name, data), unique = args, b""
            if not state.grabbing:
                raise InvalidWorkerState(f"{connection!r}: received a job when we weren't expecting one")
            try:
                self._run_job(connection, handle, name, unique, data)
            finally:
                self._end_grab(connection, state)
                state.want_grab = True  # there may be more: grab again before sleeping
                self._jobs_done += 1
        elif ptype == T.ERROR:
            self.on_gearman_error(to_str(args[0]), to_str(args[1]))
        else:
            log.error("%r: unexpected packet %s", connection, T(ptype).name if ptype > 0 else ptype)

    def _end_grab(self, connection: GearmanConnection, state: _WorkerConnectionState) -> None:
        state.grabbing = False
        if self._lock_holder is connection:
            self._lock_holder = None

    def _run_job(self, connection: GearmanConnection, handle: bytes, name: bytes, unique: bytes,
                 data: bytes) -> None:
        task = self._task_names.get(name)
        if task is None:
            log.error("%r: job %s for unregistered task %r; failing it", connection, to_str(handle), name)
            connection.send_command(T.WORK_FAIL, handle)
            return
        job = None
        self._job_finished = False
        try:
            job = self.create_job(connection, to_str(handle), task, to_str(unique), self.decode_data(data))
            self._current_job = job
            self.on_job_execute(job)
        except Exception:
            log.exception("job %s (%r) raised outside its callback", to_str(handle), task)
        finally:
            self._current_job = None
        if not self._job_finished and connection.connected:
            log.error("job %s (%r) sent no result; failing it", to_str(handle), task)
            connection.send_command(T.WORK_FAIL, handle)

    def create_job(self, connection: GearmanConnection, handle: str, task: Any, unique: str, data: Any) -> GearmanJob:
        """Build the GearmanJob handed to a callback (override job_class to customise)."""
        return self.job_class(connection, handle, task, unique, data)

    # -- running jobs (override points) --------------------------------------------------------------------------

    def on_job_execute(self, current_job: GearmanJob) -> bool:
        """Run the job's callback; hand its result to on_job_complete, an exception to on_job_exception."""
        try:
            callback = self.worker_abilities[current_job.task]
            job_result = callback(self, current_job)
        except Exception:
            return self.on_job_exception(current_job, sys.exc_info())  # type: ignore[arg-type]
        return self.on_job_complete(current_job, job_result)

    def on_job_exception(self, current_job: GearmanJob, exc_info: ExcInfo) -> bool:
        """The callback raised: send WORK_FAIL (as python-gearman does; override to send_job_exception).

        Nothing is sent if the callback already ended the job (send_job_complete/failure/exception).
        """
        log.warning("job %s (%r) failed", current_job.handle, current_job.task, exc_info=exc_info)
        if not getattr(current_job, "_finished", False):
            self.send_job_failure(current_job)
        return False

    def on_job_complete(self, current_job: GearmanJob, job_result: Any) -> bool:
        """The callback returned JOB_RESULT: send WORK_COMPLETE with it.

        Nothing is sent if the callback already ended the job (send_job_complete/failure/exception).
        """
        if not getattr(current_job, "_finished", False):
            self.send_job_complete(current_job, job_result)
        return True

    # -- updates from inside a callback --------------------------------------------------------------------------

    def _send(self, current_job: GearmanJob, ptype: int, *args: bytes, poll_timeout: float | None = None,
              final: bool = False) -> None:
        connection = current_job.connection
        if final:
            current_job._finished = True  # type: ignore[attr-defined]
            if current_job is self._current_job:
                self._job_finished = True
        if not isinstance(connection, GearmanConnection) or not connection.connected:
            log.warning("cannot send %s for job %s: connection lost", T(ptype).name, current_job.handle)
            return
        connection.send_command(ptype, to_bytes(current_job.handle), *args)
        self.flush_connection(connection, timeout=poll_timeout)

    def wait_until_updates_sent(self, multiple_gearman_jobs: Sequence[GearmanJob],
                                poll_timeout: float | None = None) -> None:
        """Block until everything queued for these jobs' connections is written."""
        for connection in {id(j.connection): j.connection for j in multiple_gearman_jobs}.values():
            if isinstance(connection, GearmanConnection) and connection.connected:
                self.flush_connection(connection, timeout=poll_timeout)

    def send_job_status(self, current_job: GearmanJob, numerator: int | float, denominator: int | float,
                        poll_timeout: float | None = None) -> None:
        """Send WORK_STATUS (progress NUMERATOR / DENOMINATOR)."""
        for value in (numerator, denominator):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"numerator and denominator must be numbers, got {value!r}")
        self._send(current_job, T.WORK_STATUS, str(numerator).encode(), str(denominator).encode(),
                   poll_timeout=poll_timeout)

    def send_job_complete(self, current_job: GearmanJob, data: Any, poll_timeout: float | None = None) -> None:
        """Send WORK_COMPLETE with DATA (the job's result)."""
        payload = self.encode_data(data)
        self._send(current_job, T.WORK_COMPLETE, payload, poll_timeout=poll_timeout, final=True)

    def send_job_failure(self, current_job: GearmanJob, poll_timeout: float | None = None) -> None:
        """Send WORK_FAIL."""
        self._send(current_job, T.WORK_FAIL, poll_timeout=poll_timeout, final=True)

    def send_job_exception(self, current_job: GearmanJob, data: Any, poll_timeout: float | None = None) -> None:
        """Send WORK_EXCEPTION with DATA; it ends the job (clients without the option see WORK_FAIL)."""
        payload = self.encode_data(data)
        self._send(current_job, T.WORK_EXCEPTION, payload, poll_timeout=poll_timeout, final=True)

    def send_job_data(self, current_job: GearmanJob, data: Any, poll_timeout: float | None = None) -> None:
        """Send WORK_DATA (a partial result)."""
        self._send(current_job, T.WORK_DATA, self.encode_data(data), poll_timeout=poll_timeout)

    def send_job_warning(self, current_job: GearmanJob, data: Any, poll_timeout: float | None = None) -> None:
        """Send WORK_WARNING."""
        self._send(current_job, T.WORK_WARNING, self.encode_data(data), poll_timeout=poll_timeout)
