"""GearmanAdminClient: the server's text admin commands and an echo ping (python-gearman 2.x API).

Each call blocks until the answer is complete (or ``poll_timeout`` passes, raising
InvalidAdminClientState). Answers are str, as python-gearman returned them; multi-line answers are
parsed into tuples of dicts. An ``ERR ...`` line from the server raises ProtocolError.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable
from typing import Any

from ...protocol.admin_parse import ReplyLines, job_row, status_row, worker_row
from ...protocol.codec import TEXT
from ...protocol.packets import T
from .connection import GearmanConnection
from .connection_manager import GearmanConnectionManager, log
from .errors import ConnectionError, InvalidAdminClientState, ProtocolError, ServerUnavailable
from .util import to_bytes, to_str, unlist

ECHO_STRING = "ping? pong!"
DEFAULT_ADMIN_CLIENT_TIMEOUT = 10.0

GEARMAN_SERVER_COMMAND_STATUS = "status"
GEARMAN_SERVER_COMMAND_VERSION = "version"
GEARMAN_SERVER_COMMAND_WORKERS = "workers"
GEARMAN_SERVER_COMMAND_MAXQUEUE = "maxqueue"
GEARMAN_SERVER_COMMAND_SHUTDOWN = "shutdown"
GEARMAN_SERVER_COMMAND_GETPID = "getpid"
GEARMAN_SERVER_COMMAND_CANCEL_JOB = "cancel job"
GEARMAN_SERVER_COMMAND_SHOW_JOBS = "show jobs"
GEARMAN_SERVER_COMMAND_SHOW_UNIQUE_JOBS = "show unique jobs"

#: Commands whose answer is a list of lines ended by a line holding a single ".".
_MULTI_LINE = {GEARMAN_SERVER_COMMAND_STATUS, GEARMAN_SERVER_COMMAND_WORKERS, GEARMAN_SERVER_COMMAND_SHOW_JOBS,
               GEARMAN_SERVER_COMMAND_SHOW_UNIQUE_JOBS}
_ECHO = "echo"


class _AdminConnectionState:
    """Commands sent on the admin connection and the answers gathered so far."""

    __slots__ = ("sent", "reply", "responses")

    def __init__(self) -> None:
        self.sent: collections.deque[str] = collections.deque()
        self.reply: ReplyLines | None = None  # the lines of the answer being read
        self.responses: collections.deque[tuple[str, Any]] = collections.deque()


class GearmanAdminClient(GearmanConnectionManager):
    """Blocking admin client for ONE server."""

    _text_protocol = True

    def __init__(self, host_list: Iterable[Any] | None = None,
                 poll_timeout: float = DEFAULT_ADMIN_CLIENT_TIMEOUT) -> None:
        super().__init__(host_list=host_list)
        self.poll_timeout = poll_timeout
        self.current_connection: GearmanConnection = unlist(self.connection_list)

    # -- commands ------------------------------------------------------------------------------------------------

    def ping_server(self) -> float:
        """Echo a string through the server; return the round trip time in seconds."""
        start = time.monotonic()
        state = self._establish()
        state.sent.append(_ECHO)
        self.current_connection.send_command(T.ECHO_REQ, ECHO_STRING.encode())
        response = self.wait_until_server_responds(_ECHO)
        if response != ECHO_STRING:
            raise InvalidAdminClientState(f"Echo string mismatch: got {response}, expected {ECHO_STRING}")
        return time.monotonic() - start

    def send_maxqueue(self, task: Any, max_size: int) -> str:
        """Set the longest queue the server keeps for TASK ('OK')."""
        return self._command(GEARMAN_SERVER_COMMAND_MAXQUEUE, f" {to_str(to_bytes(task))} {int(max_size)}")

    def send_shutdown(self, graceful: bool = True) -> None:
        """Ask the server to shut down (gracefully: after running jobs finish)."""
        self._command(GEARMAN_SERVER_COMMAND_SHUTDOWN, " graceful" if graceful else "")
        return None

    def get_status(self) -> tuple[dict[str, Any], ...]:
        """Per task: {'task', 'queued', 'running', 'workers'}."""
        return self._command(GEARMAN_SERVER_COMMAND_STATUS)

    def get_version(self) -> str:
        """The server's version line (e.g. 'OK 1.1.20')."""
        return self._command(GEARMAN_SERVER_COMMAND_VERSION)

    def get_workers(self) -> tuple[dict[str, Any], ...]:
        """Per connection: {'file_descriptor', 'ip', 'client_id', 'tasks'}."""
        return self._command(GEARMAN_SERVER_COMMAND_WORKERS)

    def get_pid(self) -> str:
        """The server's 'OK <pid>' line."""
        return self._command(GEARMAN_SERVER_COMMAND_GETPID)

    def cancel_job(self, handle: Any) -> str:
        """Remove a queued job by handle (the server's answer line)."""
        return self._command(GEARMAN_SERVER_COMMAND_CANCEL_JOB, " " + to_str(to_bytes(handle)))

    def get_jobs(self) -> tuple[dict[str, Any], ...]:
        """Per job: {'handle', 'queued', 'canceled', 'enabled'} (the four columns of 'show jobs')."""
        return self._command(GEARMAN_SERVER_COMMAND_SHOW_JOBS)

    def get_unique_jobs(self) -> tuple[dict[str, Any], ...]:
        """Per job: {'unique'}."""
        return self._command(GEARMAN_SERVER_COMMAND_SHOW_UNIQUE_JOBS)

    # -- plumbing ------------------------------------------------------------------------------------------------

    def establish_admin_connection(self) -> None:
        self._establish()

    def _establish(self) -> _AdminConnectionState:
        if self.current_connection is None:
            raise ServerUnavailable("GearmanAdminClient was given no server")
        try:
            self.establish_connection(self.current_connection)
        except ConnectionError as exc:
            raise ServerUnavailable(f"Found no valid connections in list: {self.connection_list!r}") from exc
        state = self.current_connection.state
        assert isinstance(state, _AdminConnectionState)
        return state

    def _command(self, command: str, arguments: str = "") -> Any:
        state = self._establish()
        state.sent.append(command)
        self.current_connection.send_text((command + arguments).encode("utf-8", "surrogateescape"))
        return self.wait_until_server_responds(command)

    def wait_until_server_responds(self, expected_type: str) -> Any:
        """Poll until the answer to the oldest command arrived; return it parsed."""
        connection = self.current_connection
        state = connection.state

        def continue_while_no_response(any_activity: bool) -> bool:
            return isinstance(connection.state, _AdminConnectionState) and not connection.state.responses

        try:
            self.poll_connections_until_stopped([connection], continue_while_no_response, timeout=self.poll_timeout)
        except ServerUnavailable:
            if expected_type == GEARMAN_SERVER_COMMAND_SHUTDOWN:
                return None  # the server closed the connection as it shut down
            raise
        if not isinstance(state, _AdminConnectionState) or not state.responses:
            raise InvalidAdminClientState(f"Admin client timed out after {self.poll_timeout} second(s)")
        command, response = state.responses.popleft()
        if command != expected_type:
            raise InvalidAdminClientState(f"Received an unexpected response... got command {command!r}, "
                                          f"expecting command {expected_type!r}")
        if isinstance(response, ProtocolError):
            raise response
        return response

    def on_connect(self, connection: GearmanConnection) -> None:
        connection.state = _AdminConnectionState()

    def handle_packet(self, connection: GearmanConnection, ptype: int, args: tuple[bytes, ...]) -> None:
        state = connection.state
        if not isinstance(state, _AdminConnectionState):
            return
        if ptype == T.ECHO_RES:
            if state.sent and state.sent[0] == _ECHO:
                state.sent.popleft()
                state.responses.append((_ECHO, to_str(args[0])))
            else:
                log.error("%r: unexpected ECHO_RES", connection)
            return
        if ptype == T.ERROR:
            self.on_gearman_error(to_str(args[0]), to_str(args[1]))
            if state.sent:
                state.responses.append((state.sent.popleft(), ProtocolError(f"{to_str(args[0])}: "
                                                                            f"{to_str(args[1])}")))
            return
        if ptype != TEXT:
            log.error("%r: unexpected packet %s", connection, T(ptype).name if ptype > 0 else ptype)
            return
        line = to_str(args[0])
        if not state.sent:
            raise InvalidAdminClientState(f"Received an unexpected server response: {line!r}")
        command = state.sent[0]
        if state.reply is None:
            state.reply = ReplyLines(command)
        reply = state.reply
        if not reply.add(line):
            return
        state.reply = None
        state.sent.popleft()
        if reply.error is not None:
            state.responses.append((command, ProtocolError(f"{command}: {line}")))
        elif command in _MULTI_LINE:
            try:
                state.responses.append((command, _parse_lines(command, reply.lines)))
            except ProtocolError as exc:
                state.responses.append((command, exc))
        elif command == GEARMAN_SERVER_COMMAND_MAXQUEUE and line != "OK":
            state.responses.append((command, ProtocolError(f"Expected 'OK', received: {line}")))
        elif command == GEARMAN_SERVER_COMMAND_SHUTDOWN:
            state.responses.append((command, None))
        else:
            state.responses.append((command, line))


def _parse_lines(command: str, lines: list[str]) -> tuple[dict[str, Any], ...]:
    """A list answer as python-gearman gave it: a dict per line, with its key names."""
    try:
        if command == GEARMAN_SERVER_COMMAND_STATUS:
            return tuple({"task": r.function, "queued": r.total, "running": r.running, "workers": r.workers}
                         for r in map(status_row, lines))
        if command == GEARMAN_SERVER_COMMAND_WORKERS:
            return tuple({"file_descriptor": w.fd, "ip": w.address, "client_id": w.client_id, "tasks": w.functions}
                         for w in map(worker_row, lines))
        if command == GEARMAN_SERVER_COMMAND_SHOW_JOBS:
            return tuple({"handle": j.handle, "queued": j.retries, "canceled": j.ignore, "enabled": j.queued}
                         for j in map(job_row, lines))
    except ValueError as exc:
        raise ProtocolError(str(exc)) from None
    return tuple({"unique": line} for line in lines)
