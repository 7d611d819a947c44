"""GearmanConnectionManager: the poll loop shared by GearmanClient, GearmanWorker and GearmanAdminClient.

It keeps the list of server connections, opens them on demand, waits on their sockets with one
``selectors`` call per turn (never a busy loop: it sleeps until a socket is ready or the timeout ends),
writes queued packets, reads and parses incoming ones and hands each to ``handle_packet`` of the
subclass. Payloads pass through the class attribute ``data_encoder`` (see encoders.py).
"""

from __future__ import annotations

import logging
import selectors
from collections.abc import Callable, Iterable
from typing import Any

from ...protocol.codec import PARSE_ERROR
from .connection import GearmanConnection
from .encoders import BytesDataEncoder, DataEncoder, NoopEncoder, TextDataEncoder, encode_with
from .errors import ConnectionError, ProtocolError, ServerUnavailable
from .job import GearmanJob, GearmanJobRequest
from .util import Stopwatch, disambiguate_server_parameter

log = logging.getLogger("geartrain.compat.gearman")

__all__ = ["BytesDataEncoder", "DataEncoder", "GearmanConnectionManager", "NoopEncoder", "TextDataEncoder"]


class GearmanConnectionManager:
    """Base class of the client, worker and admin client: owns the connections and the poll loop."""

    connection_class = GearmanConnection
    job_class = GearmanJob
    job_request_class = GearmanJobRequest
    #: Converts every ``data`` field: override with a DataEncoder subclass (see encoders.py).
    data_encoder: type[DataEncoder] = TextDataEncoder
    #: Admin clients read text lines as well as binary packets.
    _text_protocol = False

    def __init__(self, host_list: Iterable[Any] | None = None) -> None:
        self.connection_list: list[GearmanConnection] = []
        for hostport in host_list or []:
            self.add_connection(hostport)

    # -- connections -------------------------------------------------------------------------------------------

    def add_connection(self, hostport_tuple: Any) -> GearmanConnection:
        """Add a server ('host:port', 'host' or (host, port)) to this manager."""
        host, port = disambiguate_server_parameter(hostport_tuple)
        connection = self.connection_class(host=host, port=port, text=self._text_protocol)
        self.connection_list.append(connection)
        return connection

    def establish_connection(self, current_connection: GearmanConnection) -> GearmanConnection:
        """Connect if not connected (raises ConnectionError) and let the subclass greet the server."""
        if current_connection.connected:
            return current_connection
        current_connection.connect()
        try:
            self.on_connect(current_connection)
            current_connection.flush()
        except ConnectionError:
            self.handle_error(current_connection)
            raise
        return current_connection

    def shutdown(self) -> None:
        """Close every connection."""
        for connection in self.connection_list:
            if connection.connected:
                self.handle_error(connection)

    def handle_error(self, current_connection: GearmanConnection) -> None:
        """A connection broke: close it and let the subclass fail what depended on it."""
        was_connected = current_connection.connected or current_connection.state is not None
        current_connection.close()
        if was_connected:
            self.on_connection_lost(current_connection)
        current_connection.state = None
        current_connection.inbox.clear()

    # -- hooks for subclasses --------------------------------------------------------------------------------

    def on_connect(self, connection: GearmanConnection) -> None:
        """Called once per new socket, before anything else is sent on it."""

    def on_connection_lost(self, connection: GearmanConnection) -> None:
        """Called when a connection that was up goes down."""

    def handle_packet(self, connection: GearmanConnection, ptype: int, args: tuple[bytes, ...]) -> None:
        """Called for every packet (or admin text line, ptype 0) the server sends."""
        raise NotImplementedError

    def on_gearman_error(self, error_code: Any, error_text: Any) -> bool:
        log.error("Received error from server: %s: %s", error_code, error_text)
        return False

    # -- data --------------------------------------------------------------------------------------------------

    def encode_data(self, data: Any) -> bytes:
        return encode_with(self.data_encoder, data)

    def decode_data(self, data: bytes) -> Any:
        return self.data_encoder.decode(data)

    # -- polling -----------------------------------------------------------------------------------------------

    def poll_connections_once(self, submitted_connections: Iterable[GearmanConnection],
                              timeout: float | None = None) -> bool:
        """Wait until a socket is ready (or TIMEOUT), do its I/O, dispatch what arrived; True if anything happened."""
        connections = [c for c in submitted_connections if c.connected]
        if not connections:
            return False
        activity = self.dispatch_inbox(connections)
        if activity:
            timeout = 0.0
        with selectors.DefaultSelector() as selector:
            for connection in connections:
                events = selectors.EVENT_READ | (selectors.EVENT_WRITE if connection.writable() else 0)
                selector.register(connection.gearman_socket, events, connection)  # type: ignore[arg-type]
            ready = selector.select(timeout)
        for key, mask in ready:
            connection = key.data
            if not connection.connected:
                continue
            activity = True
            self._service(connection, mask)
        return self.dispatch_inbox(connections) or activity

    def _service(self, connection: GearmanConnection, mask: int) -> bool:
        """Write and read CONNECTION as the selector's MASK says it can; False if the connection was lost."""
        try:
            if mask & selectors.EVENT_WRITE:
                connection.flush()
            if mask & selectors.EVENT_READ:
                connection.read()
        except (ConnectionError, ProtocolError) as exc:
            log.warning("connection lost: %s", exc)
            self.handle_error(connection)
            return False
        return True

    def dispatch_inbox(self, connections: Iterable[GearmanConnection]) -> bool:
        """Hand every parsed packet waiting on CONNECTIONS to ``handle_packet``; then write what that queued."""
        activity = False
        for connection in connections:
            while connection.connected and connection.inbox:
                ptype, args = connection.inbox.popleft()
                activity = True
                if ptype == PARSE_ERROR:
                    log.error("%r: unusable packet from server: %s", connection, args[1].decode(errors="replace"))
                    continue
                self.handle_packet(connection, ptype, args)
            if connection.connected and connection.outbox:
                try:
                    connection.flush()
                except ConnectionError as exc:
                    log.warning("connection lost: %s", exc)
                    self.handle_error(connection)
        return activity

    def poll_connections_until_stopped(self, submitted_connections: Iterable[GearmanConnection],
                                       callback_fxn: Callable[[bool], bool], timeout: float | None = None) -> bool:
        """Poll until CALLBACK_FXN(any_activity) returns False or TIMEOUT passes.

        Returns False when the callback stopped it, True on timeout. Raises ServerUnavailable when the
        callback wants to go on but none of the connections is up.
        """
        connections = list(submitted_connections)
        stopwatch = Stopwatch(timeout)
        any_activity = False
        while True:
            if not callback_fxn(any_activity):
                return False
            if not any(c.connected for c in connections):
                raise ServerUnavailable(f"Found no valid connections in list: {self.connection_list!r}")
            remaining = stopwatch.get_time_remaining()
            if remaining == 0.0:
                return True
            any_activity = self.poll_connections_once(connections, timeout=remaining)

    def flush_connection(self, connection: GearmanConnection, timeout: float | None = None) -> None:
        """Block until CONNECTION's outbox is written (or TIMEOUT); incoming packets wait in its inbox."""
        stopwatch = Stopwatch(timeout)
        while connection.writable():
            remaining = stopwatch.get_time_remaining()
            with selectors.DefaultSelector() as selector:
                selector.register(connection.gearman_socket, selectors.EVENT_READ | selectors.EVENT_WRITE)  # type: ignore[arg-type]
                ready = selector.select(remaining)
            for _key, mask in ready:
                if not self._service(connection, mask):
                    return
            if remaining == 0.0:
                return
