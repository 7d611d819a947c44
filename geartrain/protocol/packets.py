"""The one table of Gearman packet types.

Every packet number, name, argument layout and direction is written here once; the codec, the
server's dispatch, the client and worker libraries and the docs all read from this table.

Layout rule (as gearmand's ``libgearman/command.cc``): a packet's payload is its arguments joined
by single NUL bytes; every argument but the last is NUL-terminated and the last one is whatever
remains of the payload. So a packet with N named fields is split with at most N-1 NULs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

REQ = b"\0REQ"
RES = b"\0RES"
HEADER_SIZE = 12

#: Job handles and uniques are at most this many bytes (gearmand: 64 including its NUL).
MAX_HANDLE_SIZE = 64
MAX_UNIQUE_SIZE = 64
#: Default largest payload we accept in one packet (an option of the server).
DEFAULT_MAX_PACKET_SIZE = 64 * 1024 * 1024


class Direction(IntEnum):
    """Who may send a packet: a client or worker (REQ), the server (RES), or both."""

    REQ = 1
    RES = 2
    BOTH = 3


class T(IntEnum):
    """Packet type numbers (``libgearman-1.0/protocol.h``)."""

    TEXT = 0  # an admin text line (internal marker, never on the wire as a binary packet)
    CAN_DO = 1
    CANT_DO = 2
    RESET_ABILITIES = 3
    PRE_SLEEP = 4
    UNUSED = 5
    NOOP = 6
    SUBMIT_JOB = 7
    JOB_CREATED = 8
    GRAB_JOB = 9
    NO_JOB = 10
    JOB_ASSIGN = 11
    WORK_STATUS = 12
    WORK_COMPLETE = 13
    WORK_FAIL = 14
    GET_STATUS = 15
    ECHO_REQ = 16
    ECHO_RES = 17
    SUBMIT_JOB_BG = 18
    ERROR = 19
    STATUS_RES = 20
    SUBMIT_JOB_HIGH = 21
    SET_CLIENT_ID = 22
    CAN_DO_TIMEOUT = 23
    ALL_YOURS = 24
    WORK_EXCEPTION = 25
    OPTION_REQ = 26
    OPTION_RES = 27
    WORK_DATA = 28
    WORK_WARNING = 29
    GRAB_JOB_UNIQ = 30
    JOB_ASSIGN_UNIQ = 31
    SUBMIT_JOB_HIGH_BG = 32
    SUBMIT_JOB_LOW = 33
    SUBMIT_JOB_LOW_BG = 34
    SUBMIT_JOB_SCHED = 35
    SUBMIT_JOB_EPOCH = 36
    SUBMIT_REDUCE_JOB = 37
    SUBMIT_REDUCE_JOB_BACKGROUND = 38
    GRAB_JOB_ALL = 39
    JOB_ASSIGN_ALL = 40
    GET_STATUS_UNIQUE = 41
    STATUS_RES_UNIQUE = 42


MAX_TYPE = 42


@dataclass(frozen=True, slots=True)
class PacketSpec:
    """One row of the table: what a packet type is called, carries and who sends it."""

    type: T
    fields: tuple[str, ...]
    direction: Direction
    doc: str

    @property
    def name(self) -> str:
        return self.type.name

    @property
    def nfields(self) -> int:
        return len(self.fields)


_R, _S, _B = Direction.REQ, Direction.RES, Direction.BOTH

_ROWS: list[tuple[T, tuple[str, ...], Direction, str]] = [
    (T.CAN_DO, ("function",), _R, "worker can do FUNCTION"),
    (T.CANT_DO, ("function",), _R, "worker no longer does FUNCTION"),
    (T.RESET_ABILITIES, (), _R, "worker forgets every function"),
    (T.PRE_SLEEP, (), _R, "worker is about to sleep; wake it with NOOP"),
    (T.UNUSED, (), _R, "unused number"),
    (T.NOOP, (), _S, "wake up: there may be work"),
    (T.SUBMIT_JOB, ("function", "unique", "data"), _R, "foreground job, normal priority"),
    (T.JOB_CREATED, ("handle",), _S, "the job was queued under HANDLE"),
    (T.GRAB_JOB, (), _R, "worker asks for a job (JOB_ASSIGN)"),
    (T.NO_JOB, (), _S, "no job for this worker"),
    (T.JOB_ASSIGN, ("handle", "function", "data"), _S, "a job for the worker"),
    (T.WORK_STATUS, ("handle", "numerator", "denominator"), _B, "progress of a job"),
    (T.WORK_COMPLETE, ("handle", "data"), _B, "the job's result"),
    (T.WORK_FAIL, ("handle",), _B, "the job failed"),
    (T.GET_STATUS, ("handle",), _R, "ask for the status of a job by handle"),
    (T.ECHO_REQ, ("data",), _R, "echo DATA back"),
    (T.ECHO_RES, ("data",), _S, "the echoed DATA"),
    (T.SUBMIT_JOB_BG, ("function", "unique", "data"), _R, "background job, normal priority"),
    (T.ERROR, ("code", "text"), _S, "an error: CODE and TEXT"),
    (T.STATUS_RES, ("handle", "known", "running", "numerator", "denominator"), _S, "status of a job"),
    (T.SUBMIT_JOB_HIGH, ("function", "unique", "data"), _R, "foreground job, high priority"),
    (T.SET_CLIENT_ID, ("client_id",), _R, "name this connection (shown by `workers`)"),
    (T.CAN_DO_TIMEOUT, ("function", "timeout"), _R, "worker can do FUNCTION within TIMEOUT"),
    (T.ALL_YOURS, (), _R, "documented, never implemented by gearmand"),
    (T.WORK_EXCEPTION, ("handle", "data"), _B, "the job raised an exception"),
    (T.OPTION_REQ, ("option",), _R, "set a connection option (`exceptions`)"),
    (T.OPTION_RES, ("option",), _S, "the option was set"),
    (T.WORK_DATA, ("handle", "data"), _B, "partial data from a running job"),
    (T.WORK_WARNING, ("handle", "data"), _B, "a warning from a running job"),
    (T.GRAB_JOB_UNIQ, (), _R, "worker asks for a job (JOB_ASSIGN_UNIQ)"),
    (T.JOB_ASSIGN_UNIQ, ("handle", "function", "unique", "data"), _S, "a job, with its unique"),
    (T.SUBMIT_JOB_HIGH_BG, ("function", "unique", "data"), _R, "background job, high priority"),
    (T.SUBMIT_JOB_LOW, ("function", "unique", "data"), _R, "foreground job, low priority"),
    (T.SUBMIT_JOB_LOW_BG, ("function", "unique", "data"), _R, "background job, low priority"),
    (
        T.SUBMIT_JOB_SCHED,
        ("function", "unique", "minute", "hour", "day_of_month", "month", "day_of_week", "data"),
        _R,
        "recurring (cron-style) background job",
    ),
    (T.SUBMIT_JOB_EPOCH, ("function", "unique", "epoch", "data"), _R, "background job run at EPOCH"),
    (
        T.SUBMIT_REDUCE_JOB,
        ("function", "unique", "reducer", "aggregator", "data"),
        _R,
        "foreground map/reduce job",
    ),
    (
        T.SUBMIT_REDUCE_JOB_BACKGROUND,
        ("function", "unique", "reducer", "aggregator", "data"),
        _R,
        "background map/reduce job",
    ),
    (T.GRAB_JOB_ALL, (), _R, "worker asks for a job (JOB_ASSIGN_ALL or JOB_ASSIGN_UNIQ)"),
    (
        T.JOB_ASSIGN_ALL,
        ("handle", "function", "unique", "reducer", "data"),
        _S,
        "a job, with its unique and reducer",
    ),
    (T.GET_STATUS_UNIQUE, ("unique",), _R, "ask for the status of a job by unique"),
    (
        T.STATUS_RES_UNIQUE,
        ("unique", "known", "running", "numerator", "denominator", "client_count"),
        _S,
        "status of a job by unique",
    ),
]

#: PACKETS[n] is the spec of packet type n (index 0, TEXT, is None).
PACKETS: list[PacketSpec | None] = [None] * (MAX_TYPE + 1)
for _t, _f, _d, _doc in _ROWS:
    PACKETS[_t] = PacketSpec(_t, _f, _d, _doc)
del _t, _f, _d, _doc

#: NFIELDS[n]: how many arguments packet type n carries (0 for TEXT).
NFIELDS: tuple[int, ...] = tuple(0 if p is None else p.nfields for p in PACKETS)

#: Trailing fields a peer may leave out, per packet type, with the value taken for each one missing.
#: Perl's Gearman::Worker sends a result, data, warning or exception that is false in Perl ("" or "0")
#: as the bare handle, with no NUL, and its send_work_status sends only "handle\0numerator" (just the
#: handle when the numerator is 0). gearmand 1.1.20 tolerates none of these: it looks for the missing NUL
#: past the packet's end, which misframes the stream (the next packet is swallowed or the connection
#: dropped), so the job's client waits until the worker disconnects. Here the job goes on as sent.
OPTIONAL_TAIL: dict[int, tuple[bytes, ...]] = {
    T.WORK_COMPLETE: (b"",),
    T.WORK_DATA: (b"",),
    T.WORK_WARNING: (b"",),
    T.WORK_EXCEPTION: (b"",),
    T.WORK_STATUS: (b"0", b"0"),
}

#: Submit packets: type -> (priority, background). Priority 0=HIGH, 1=NORMAL, 2=LOW (gearmand's enum).
HIGH, NORMAL, LOW = 0, 1, 2
SUBMIT_KINDS: dict[int, tuple[int, bool]] = {
    T.SUBMIT_JOB: (NORMAL, False),
    T.SUBMIT_JOB_BG: (NORMAL, True),
    T.SUBMIT_JOB_HIGH: (HIGH, False),
    T.SUBMIT_JOB_HIGH_BG: (HIGH, True),
    T.SUBMIT_JOB_LOW: (LOW, False),
    T.SUBMIT_JOB_LOW_BG: (LOW, True),
    T.SUBMIT_JOB_EPOCH: (NORMAL, True),
    T.SUBMIT_JOB_SCHED: (NORMAL, True),
    T.SUBMIT_REDUCE_JOB: (NORMAL, False),
    T.SUBMIT_REDUCE_JOB_BACKGROUND: (NORMAL, True),
}


def submit_type(priority: int, background: bool) -> T:
    """The plain SUBMIT_JOB* packet type for a priority and background flag."""
    for ptype in (
        T.SUBMIT_JOB,
        T.SUBMIT_JOB_BG,
        T.SUBMIT_JOB_HIGH,
        T.SUBMIT_JOB_HIGH_BG,
        T.SUBMIT_JOB_LOW,
        T.SUBMIT_JOB_LOW_BG,
    ):
        if SUBMIT_KINDS[ptype] == (priority, background):
            return ptype
    raise ValueError(f"no submit packet for priority={priority} background={background}")


class ErrorCode:
    """ERROR packet codes, spelt as gearmand spells them (``gearman_strerror`` without ``GEARMAN_``)."""

    INVALID_COMMAND = b"INVALID_COMMAND"
    INVALID_MAGIC = b"INVALID_MAGIC"
    INVALID_PACKET = b"INVALID_PACKET"
    ARGUMENT_TOO_LARGE = b"ARGUMENT_TOO_LARGE"
    QUEUE_ERROR = b"QUEUE_ERROR"
    JOB_NOT_FOUND = b"JOB_NOT_FOUND"
    UNKNOWN_OPTION = b"UNKNOWN_OPTION"
    PERMISSION_DENIED = b"PERMISSION_DENIED"
    NO_REGISTERED_FUNCTION = b"NO_REGISTERED_FUNCTION"
    INVALID_ARGUMENT = b"INVALID_ARGUMENT"
    SERVER_ERROR = b"SERVER_ERROR"
    MEMORY_ALLOCATION_FAILURE = b"MEMORY_ALLOCATION_FAILURE"
