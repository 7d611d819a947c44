"""The admin text protocol's replies, read: when a reply is complete, its error, and its rows (no I/O).

protocol/admin.py writes these replies for the server; this module reads them for the clients
(``geartrain admin``, ``geartrain top``, ``AdminClient`` and the python-gearman compatible
``GearmanAdminClient``), so each rule of the format is written once: list commands end with a
``.`` line, every other command answers one line, an ``ERR CODE TEXT`` first line (text with ``+``
for spaces) is an error, and each list's rows have their own columns. A row that does not fit its
columns raises ValueError; the callers decide whether to skip it or to fail.
"""

from __future__ import annotations

from dataclasses import dataclass

#: commands whose reply is a list of lines ended by a "." line
LIST_COMMANDS = ("status", "workers", "prioritystatus", "show jobs", "show unique jobs")
#: geartrain's own commands answered by such a list, whatever their arguments (``result KEY``, ``failed list
#: FUNC``, ``failed show ID``); ``failed`` alone lists too
OWN_LIST_COMMANDS = ("result", "policies", "failed list", "failed show")


def is_list_command(command: str) -> bool:
    """Whether COMMAND (a command line, any case and spacing) is answered by a list ending with ``.``."""
    words = command.lower().split()
    line = " ".join(words)
    if line in LIST_COMMANDS or line == "failed":
        return True
    return any(words[:len(own.split())] == own.split() for own in OWN_LIST_COMMANDS)


def parse_error(line: str) -> tuple[str, str]:
    """``ERR CODE TEXT`` -> (code, text with its ``+`` turned into spaces)."""
    parts = line.split(" ", 2)
    code = parts[1] if len(parts) > 1 else ""
    text = parts[2].replace("+", " ") if len(parts) > 2 else ""
    return code, text


class ReplyLines:
    """The text lines of one admin reply, given one at a time: ``add`` says when the reply is complete.

    Afterwards ``lines`` holds the reply (a list without its final ``.``) and ``error`` the (code, text)
    of an ``ERR`` answer, else None.
    """

    __slots__ = ("command", "is_list", "lines", "error")

    def __init__(self, command: str) -> None:
        self.command = command
        self.is_list = is_list_command(command)
        self.lines: list[str] = []
        self.error: tuple[str, str] | None = None

    def add(self, line: str) -> bool:
        """One line, without its line ending; True when it completes the reply."""
        if not self.lines and line.startswith("ERR"):
            self.error = parse_error(line)
            self.lines.append(line)
            return True
        if self.is_list:
            if line == ".":
                return True
            self.lines.append(line)
            return False
        self.lines.append(line)
        return True


def _ints(values: list[str]) -> list[int]:
    return [int(v) for v in values]


@dataclass(frozen=True, slots=True)
class StatusRow:
    """A ``status`` line: the function, its jobs (queued + running), running jobs, workers that can do it."""

    function: str
    total: int
    running: int
    workers: int


@dataclass(frozen=True, slots=True)
class PriorityRow:
    """A ``prioritystatus`` line: queued jobs of each priority, and workers."""

    function: str
    high: int
    normal: int
    low: int
    workers: int


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """A ``workers`` line: ``FD ADDRESS CLIENT_ID : FUNCTION ...``."""

    fd: str
    address: str
    client_id: str
    functions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class JobRow:
    """A ``show jobs`` line: handle, retries, whether it is ignored (cancelled), whether it is queued."""

    handle: str
    retries: int
    ignore: int
    queued: int


def _columns(line: str, n: int) -> list[str]:
    parts = line.split("\t")
    if len(parts) != n:
        raise ValueError(f"Received {len(parts)} tokens, expected {n} tokens: {parts!r}")
    return parts


def status_row(line: str) -> StatusRow:
    function, *numbers = _columns(line, 4)
    return StatusRow(function, *_ints(numbers))


def priority_row(line: str) -> PriorityRow:
    function, *numbers = _columns(line, 5)
    return PriorityRow(function, *_ints(numbers))


def worker_row(line: str) -> WorkerRow:
    tokens = line.split(" ")
    if len(tokens) < 4 or tokens[3] != ":":
        raise ValueError(f"Malformed worker response: {tokens!r}")
    return WorkerRow(tokens[0], tokens[1], tokens[2], tuple(t for t in tokens[4:] if t))


def job_row(line: str) -> JobRow:
    handle, *numbers = _columns(line, 4)
    return JobRow(handle, *_ints(numbers))
