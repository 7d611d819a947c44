"""What outlives a job, as a client reads it from a geartrain server's admin commands: ``JobResult`` (the
command ``result``: how a job stands, or how it ended if its outcome is kept) and ``FailedEntry`` (``failed
list`` and ``failed show``: the failed-job registry), parsed from the replies' exact bytes.

These are admin text commands on the Gearman port (geartrain's own, as ``shutdown`` is), so nothing changes on
the wire for clients and workers: ``AsyncClient.result`` and ``geartrain.adminclient.AdminClient`` ask them
over a connection of their own. The C gearmand answers them ``ERR UNKNOWN_COMMAND``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from .errors import JobUnknown, ServerError
from .protocol.admin_parse import parse_error

#: the states of a job that ended (the others are those of a job the server still holds: queued, running,
#: delayed, pending, and waiting: for its next try after a failed one)
ENDED = ("complete", "failed", "exception")


@dataclass(frozen=True, slots=True)
class JobResult:
    """How a job stands, or how it ended. ``state``: queued, running, delayed, pending, waiting (for its next try);
    complete, failed or exception once it ended. ``data``: WORK_COMPLETE's data. ``error``: the exception's text
    (exception), ``job failed`` (failed), or how the last try failed while the job waits for its next one."""

    state: str
    handle: bytes = b""
    function: bytes = b""
    unique: bytes = b""
    tries: int = 1
    data: bytes = b""
    error: str | None = None
    ended: float | None = None  # Unix time it ended
    progress: tuple[int, int] | None = None  # the last WORK_STATUS (numerator, denominator) while it runs
    server: str | None = None

    @property
    def done(self) -> bool:
        """Whether the job ended."""
        return self.state in ENDED

    @property
    def ok(self) -> bool:
        """Whether it ended with WORK_COMPLETE."""
        return self.state == "complete"

    @property
    def outcome(self) -> str | None:
        """complete, failed or exception once it ended; None while it is not over."""
        return self.state if self.done else None


def listing(raw: bytes, server: str = "") -> list[bytes]:
    """The lines of an admin listing (ended by ``.``); an ``ERR`` reply raises ServerError."""
    if raw.startswith(b"ERR"):
        code, text = parse_error(raw.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace"))
        raise ServerError(code.encode(), (((server + ": ") if server else "") + text).encode())
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if lines and lines[-1] == b".":
        lines.pop()
    return lines


def _fields(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    pairs = []
    for line in lines:
        name, _, value = line.partition(b"\t")
        pairs.append((name, value))
    return pairs


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def parse_result(raw: bytes, server: str | None = None) -> JobResult:
    """The reply to ``result KEY`` (``name<tab>value`` lines)."""
    values = dict(_fields(listing(raw, server or "")))
    state = _text(values.get(b"state", b"unknown"))
    data = base64.b64decode(values.get(b"data", b""))
    error = _text(values[b"error"]) if b"error" in values else None
    if state == "exception":
        data, error = b"", _text(data)
    elif state == "failed":
        error = "job failed"
    progress = None
    if b"progress" in values:
        numerator, _, denominator = values[b"progress"].partition(b"/")
        progress = (_int(numerator), _int(denominator))
    return JobResult(state, values.get(b"handle", b""), values.get(b"function", b""), values.get(b"unique", b""),
                     _int(values.get(b"tries", b"1")) or 1, data, error,
                     float(values[b"ended"]) if b"ended" in values else None, progress, server)


def _int(value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


@dataclass(frozen=True, slots=True)
class Attempt:
    """One failed try of a failed job: when it started and ended, where it ran, how it failed and what it said."""

    number: int
    started: float
    ended: float
    worker: str  # "HOST fd N", or "-" when it ran nowhere
    error: str  # "exception: TEXT", "failed", "worker lost: ...", "timed out: ..."


@dataclass(frozen=True, slots=True)
class FailedEntry:
    """A job in a server's failed-job registry (``failed list``; ``failed show`` adds the rest)."""

    id: int
    function: bytes
    unique: bytes
    tries: int
    failed_at: float
    size: int  # the payload's bytes
    error: str  # how its last try failed
    server: str | None = None
    handle: bytes = b""
    priority: int = 1
    background: bool = True
    data: bytes = b""  # its payload as kept (cut beyond the server's --failed-max-payload)
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def cut(self) -> bool:
        """Only the start of its payload is kept (``show`` tells): it cannot be requeued."""
        return bool(self.attempts) and len(self.data) < self.size


def parse_failed_list(raw: bytes, server: str | None = None) -> list[FailedEntry]:
    """The reply to ``failed list`` (ID, FUNCTION, UNIQUE, TRIES, FAILED_AT, SIZE, LAST_ERROR per row)."""
    entries = []
    for line in listing(raw, server or ""):
        cells = line.split(b"\t")
        if len(cells) < 7 or not cells[0].isdigit():
            continue
        entries.append(FailedEntry(int(cells[0]), cells[1], cells[2], _int(cells[3]), float(cells[4]),
                                   _int(cells[5]), _text(b"\t".join(cells[6:])), server))
    return entries


def parse_failed_show(raw: bytes, server: str | None = None) -> FailedEntry:
    """The reply to ``failed show ID``: its fields, then a ``try`` line per try (N STARTED ENDED WORKER... ERROR)."""
    pairs = _fields(listing(raw, server or ""))
    values = dict(pairs)
    attempts = []
    for name, value in pairs:
        if name != b"try":
            continue
        number, started, ended, rest = (value.split(b" ", 3) + [b"", b"", b""])[:4]
        worker, error = _split_worker(rest)
        attempts.append(Attempt(_int(number), float(started or 0), float(ended or 0), worker, error))
    last = attempts[-1].error if attempts else ""
    return FailedEntry(_int(values.get(b"id", b"0")), values.get(b"function", b""), values.get(b"unique", b""),
                       len(attempts), float(values.get(b"failed_at", b"0")), _int(values.get(b"size", b"0")), last,
                       server, values.get(b"handle", b""), _int(values.get(b"priority", b"1")),
                       values.get(b"background", b"1") == b"1", base64.b64decode(values.get(b"data", b"")), attempts)


#: how a try's failure begins in a ``try`` line, after the worker ("HOST fd N" or "-")
_HOWS = (b"exception", b"failed", b"worker lost", b"timed out")


def _split_worker(rest: bytes) -> tuple[str, str]:
    """``HOST fd N ERROR`` or ``- ERROR`` as (worker, error)."""
    if rest.startswith(b"- "):
        return "-", _text(rest[2:])
    parts = rest.split(b" ", 3)
    if len(parts) == 4 and parts[1] == b"fd":
        return _text(b" ".join(parts[:3])), _text(parts[3])
    for how in _HOWS:  # a worker named otherwise: find where the error starts
        at = rest.find(b" " + how)
        if at >= 0:
            return _text(rest[:at]), _text(rest[at + 1:])
    return "", _text(rest)


__all__ = ["ENDED", "Attempt", "FailedEntry", "JobResult", "JobUnknown", "listing", "parse_failed_list",
           "parse_failed_show", "parse_result"]
