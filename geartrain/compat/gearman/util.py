"""Small helpers: server address parsing, a countdown timer, bytes/str conversion for wire fields."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from .constants import DEFAULT_GEARMAN_PORT


class Stopwatch:
    """Time left until a deadline (None: no deadline)."""

    def __init__(self, time_remaining: float | None) -> None:
        self.stop_time = None if time_remaining is None else time.monotonic() + time_remaining

    def get_time_remaining(self) -> float | None:
        """Seconds left (0.0 once passed), or None without a deadline."""
        if self.stop_time is None:
            return None
        return max(0.0, self.stop_time - time.monotonic())


def disambiguate_server_parameter(hostport: Any) -> tuple[str, int]:
    """('host', port) or 'host:port' or 'host' (default port) or '[v6addr]:port' -> (host, port)."""
    if isinstance(hostport, (tuple, list)):
        host, port = hostport
        return str(host), int(port)
    text = str(hostport)
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else DEFAULT_GEARMAN_PORT
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, DEFAULT_GEARMAN_PORT


def unlist(given_list: Sequence[Any]) -> Any:
    """The single item of a one-item list (None for an empty one)."""
    if len(given_list) == 0:
        return None
    if len(given_list) == 1:
        return given_list[0]
    raise ValueError(len(given_list))


def to_bytes(value: Any) -> bytes:
    """A wire field (task name, unique, handle) as bytes: str is UTF-8 encoded, bytes-likes pass."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"expected str or bytes, got {type(value).__name__}")


def to_str(value: bytes) -> str:
    """A wire field as str (UTF-8; undecodable bytes survive a round trip through surrogateescape)."""
    return value.decode("utf-8", "surrogateescape")
