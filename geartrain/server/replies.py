"""What every part of the job logic shares: prebuilt reply packets, a few limits, and small helpers.

Split out of state.py so its parts (submitting.py, workers.py, results.py, timers.py) can use them
without importing each other. Plain constants and pure functions; nothing here holds state.
"""

from __future__ import annotations

from ..protocol.codec import error_packet, pack_res
from ..protocol.packets import ErrorCode, T
from .jobs import QUEUED, TIME_BUCKETS, Function

NOOP = pack_res(T.NOOP)
NO_JOB = pack_res(T.NO_JOB)
JOB_CREATED = T.JOB_CREATED
JOB_ASSIGN = T.JOB_ASSIGN
JOB_ASSIGN_UNIQ = T.JOB_ASSIGN_UNIQ
JOB_ASSIGN_ALL = T.JOB_ASSIGN_ALL
WORK_FAIL = T.WORK_FAIL
#: the magic and type of a packet the hot paths build by hand (the 4-byte size follows)
WORK_COMPLETE_HEAD = pack_res(T.WORK_COMPLETE)[:8]
JOB_ASSIGN_UNIQ_HEAD = pack_res(T.JOB_ASSIGN_UNIQ)[:8]
JOB_CREATED_HEAD = pack_res(T.JOB_CREATED)[:8]
NUL = b"\0"
#: a payload at least this big is queued for writing as a part of its own (no copy into the packet)
BIG_PART = 64 * 1024
NOT_EXPECTED = error_packet(ErrorCode.INVALID_COMMAND, b"Command not expected")
# gearmand words "job not found" differently per packet type
JOB_NOT_FOUND = error_packet(ErrorCode.JOB_NOT_FOUND, b"Job given in work result not found")
DATA_NOT_FOUND = error_packet(ErrorCode.JOB_NOT_FOUND, b"Job does not exist on server")
EXCEPTION_NOT_FOUND = error_packet(ErrorCode.JOB_NOT_FOUND, b"An exception was received for a job that does not exist")
UNIQUE_TOO_LARGE = error_packet(ErrorCode.ARGUMENT_TOO_LARGE, b"Unique value too large")
HANDLE_TOO_LARGE = error_packet(ErrorCode.ARGUMENT_TOO_LARGE, b"Job handle too large")
QUEUE_FULL = error_packet(ErrorCode.QUEUE_ERROR, b"Job queue is full")
UNKNOWN_OPTION = error_packet(ErrorCode.UNKNOWN_OPTION, b"Server does not recognize given option")

#: the first histogram bound: most waits and runs under load end below it, and then need no bisect
FIRST_BOUND = TIME_BUCKETS[0]

#: a worker with more functions than this is served from State.ready rather than by walking its list
MANY_FUNCTIONS = 16

#: how a job ended, for the metrics counters and the log
COMPLETED, FAILED, EXCEPTION = "completed", "failed", "exception"


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


def compact_queue(f: Function, priority: int) -> None:
    """Drop the dead entries lazy deletion left in a queue once they outnumber the live ones (amortized O(1)).

    Without it, clients that submit and leave while no worker drains the queue grow it without bound
    (found by the 100,000-round connect/submit/disconnect test in tests/server/test_faults.py)."""
    dq = f.queues[priority]
    if len(dq) > 64 and len(dq) > 2 * f.queued[priority]:
        live = [job for job in dq if job.state == QUEUED]
        dq.clear()
        dq.extend(live)
