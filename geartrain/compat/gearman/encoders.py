"""Data encoders: how job payloads turn into bytes on the wire and back.

python-gearman 2.x lets a client or worker class set ``data_encoder = SomeEncoder`` where ``encode`` and
``decode`` are classmethods; every ``data`` field (job data, results, WORK_DATA, WORK_WARNING,
WORK_EXCEPTION) goes through it. On Python 2 the default passed byte strings (``str``) through.

On Python 3 text and bytes differ, so the default here is :class:`TextDataEncoder`: ``encode`` takes
``str`` (UTF-8) or any bytes-like object, ``decode`` always returns ``str``. Undecodable bytes are kept
with ``surrogateescape``, so any payload survives a round trip unchanged. :class:`BytesDataEncoder`
passes ``bytes`` through unchanged for code that wants raw bytes.

Custom encoders written for Python 2 keep working: ``decode`` receives ``bytes`` and ``encode`` may
return ``bytes`` or ``str`` (a ``str`` is sent UTF-8 encoded), so the documentation's JSON and pickle
encoders run as written.
"""

from __future__ import annotations

from typing import Any

_BYTES_LIKE = (bytes, bytearray, memoryview)


class DataEncoder:
    """Base class: override the classmethods ``encode(object) -> bytes|str`` and ``decode(bytes) -> object``."""

    @classmethod
    def encode(cls, encodable_object: Any) -> bytes | str:
        raise NotImplementedError

    @classmethod
    def decode(cls, decodable_string: bytes) -> Any:
        raise NotImplementedError


class TextDataEncoder(DataEncoder):
    """The default: str <-> UTF-8 bytes (surrogateescape); bytes-like objects are sent as they are; None is empty."""

    @classmethod
    def encode(cls, encodable_object: Any) -> bytes:
        if isinstance(encodable_object, str):
            return encodable_object.encode("utf-8", "surrogateescape")
        if isinstance(encodable_object, _BYTES_LIKE):
            return bytes(encodable_object)
        if encodable_object is None:
            return b""
        raise TypeError(f"Expecting str or bytes, got {type(encodable_object)!r}")

    @classmethod
    def decode(cls, decodable_string: bytes) -> str:
        return bytes(decodable_string).decode("utf-8", "surrogateescape")


class BytesDataEncoder(DataEncoder):
    """Raw bytes both ways (python-gearman's NoopEncoder on Python 3): encode insists on bytes; None is empty."""

    @classmethod
    def encode(cls, encodable_object: Any) -> bytes:
        if isinstance(encodable_object, _BYTES_LIKE):
            return bytes(encodable_object)
        if encodable_object is None:
            return b""
        raise TypeError(f"Expecting bytes, got {type(encodable_object)!r}")

    @classmethod
    def decode(cls, decodable_string: bytes) -> bytes:
        return bytes(decodable_string)


#: python-gearman's name for its byte-string pass-through encoder.
NoopEncoder = BytesDataEncoder


def encode_with(encoder: type[DataEncoder], obj: Any) -> bytes:
    """Run ENCODER on OBJ and make the result wire bytes (a str result is UTF-8 encoded)."""
    out = encoder.encode(obj)
    if isinstance(out, str):
        return out.encode("utf-8", "surrogateescape")
    if isinstance(out, _BYTES_LIKE):
        return bytes(out)
    raise TypeError(f"{encoder.__name__}.encode returned {type(out).__name__}, expected bytes or str")
