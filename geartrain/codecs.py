"""Payload codecs: how Python values become job payloads and results become values again.

Payloads on the wire are bytes. ``BytesCodec`` (the default) passes bytes through, encodes ``str``
as UTF-8 and returns results as bytes; ``JSONCodec`` encodes any JSON value and decodes results.
"""

from __future__ import annotations

import json
from typing import Any, Protocol


def to_bytes(value: bytes | bytearray | memoryview | str) -> bytes:
    """Bytes as they are, str as UTF-8."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"payload must be bytes or str, not {type(value).__name__}")


class Codec(Protocol):
    def encode(self, value: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


class BytesCodec:
    """bytes in and out; str is encoded as UTF-8."""

    __slots__ = ()

    def encode(self, value: Any) -> bytes:
        return to_bytes(value)

    def decode(self, data: bytes) -> bytes:
        return data


class JSONCodec:
    """Objects as compact UTF-8 JSON."""

    __slots__ = ()

    def encode(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

    def decode(self, data: bytes) -> Any:
        return json.loads(data) if data else None


BYTES = BytesCodec()
JSON = JSONCodec()
