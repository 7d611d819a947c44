"""Prebuilt error replies the handlers share, and C's atoi for the numbers in packets and admin lines.

Plain constants and a pure function; nothing here holds state. The packets a handler builds for
itself (JOB_CREATED, JOB_ASSIGN*, WORK_COMPLETE, NOOP) live with that handler.
"""

from __future__ import annotations

from ..protocol.codec import error_packet
from ..protocol.packets import ErrorCode

NOT_EXPECTED = error_packet(ErrorCode.INVALID_COMMAND, b"Command not expected")
# gearmand words "job not found" differently per packet type
JOB_NOT_FOUND = error_packet(ErrorCode.JOB_NOT_FOUND, b"Job given in work result not found")
DATA_NOT_FOUND = error_packet(ErrorCode.JOB_NOT_FOUND, b"Job does not exist on server")
EXCEPTION_NOT_FOUND = error_packet(ErrorCode.JOB_NOT_FOUND, b"An exception was received for a job that does not exist")
UNIQUE_TOO_LARGE = error_packet(ErrorCode.ARGUMENT_TOO_LARGE, b"Unique value too large")
HANDLE_TOO_LARGE = error_packet(ErrorCode.ARGUMENT_TOO_LARGE, b"Job handle too large")
QUEUE_FULL = error_packet(ErrorCode.QUEUE_ERROR, b"Job queue is full")
UNKNOWN_OPTION = error_packet(ErrorCode.UNKNOWN_OPTION, b"Server does not recognize given option")


def atoi(value: bytes) -> int:
    """C's atoi: optional sign and leading digits, anything else is 0."""
    value = value.strip()
    n = 0
    sign = 1
    i = 0
    if value[:1] in (b"-", b"+"):
        sign = -1 if value[:1] == b"-" else 1
        i = 1
    while i < len(value) and 48 <= value[i] <= 57:
        n = n * 10 + value[i] - 48
        i += 1
    return sign * n
