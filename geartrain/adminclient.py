"""Client side of gearmand's admin text protocol (status, workers, cancel job, ...), for one or several servers.

``AdminClient(servers).command("status")`` sends the line to every server and returns one
``AdminReply`` per server (its raw text and its lines). How a reply ends and how its rows read is
protocol/admin_parse.py's. Helpers sum ``status`` and ``prioritystatus`` over servers, and read and change
what geartrain servers keep beyond a job's run (``failed``, ``failed_job``, ``requeue_failed``,
``discard_failed``, ``policy``, ``policies``; their replies are read by geartrain/outcome.py).
"""

from __future__ import annotations

import socket
import ssl as _ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ConnectionLost
from .outcome import FailedEntry, listing, parse_failed_list, parse_failed_show
from .protocol.admin_parse import LIST_COMMANDS, ReplyLines, priority_row, status_row
from .transport import error_text, normalize_servers, parse_address

__all__ = ["LIST_COMMANDS", "AdminClient", "AdminReply", "FunctionStatus", "admin_command"]


@dataclass
class AdminReply:
    """One server's answer: ``raw`` bytes as sent, ``lines`` (text, without the final "."), ``error``;
    ``answered`` is False when the server could not be reached or sent nothing."""

    server: str
    command: str
    raw: bytes = b""
    lines: list[str] = field(default_factory=list)
    error: str | None = None
    answered: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def value(self) -> str:
        """For one-line replies: the text after ``OK`` (e.g. the version or pid)."""
        if self.lines and self.lines[0].startswith("OK"):
            return self.lines[0][2:].strip()
        return ""


def admin_command(server: str, command: str, *, timeout: float = 5.0, ssl: _ssl.SSLContext | None = None) -> AdminReply:
    """Send one admin COMMAND line to SERVER and read its whole reply."""
    reply = AdminReply(server, command)
    host, port = parse_address(server)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        reply.error = f"cannot connect: {error_text(exc)}"
        return reply
    collector = ReplyLines(command)
    buf = b""
    try:
        if ssl is not None:
            sock = ssl.wrap_socket(sock, server_hostname=host)
        sock.sendall(command.encode() + b"\r\n")
        done = False
        start = 0  # where the next line begins in buf
        while not done:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
            while not done and (end := buf.find(b"\n", start)) >= 0:
                done = collector.add(buf[start:end].decode(errors="replace").rstrip("\r"))
                start = end + 1
    except OSError as exc:
        reply.error = f"connection failed: {error_text(exc)}"
        return reply
    finally:
        sock.close()
    reply.raw = buf
    reply.answered = bool(buf)
    reply.lines = collector.lines
    if collector.error is not None:
        reply.error = " ".join(p for p in collector.error if p) or "ERR"
    elif not buf:
        reply.error = "no reply"
    return reply


@dataclass
class FunctionStatus:
    function: str
    total: int = 0
    running: int = 0
    workers: int = 0
    high: int = 0
    normal: int = 0
    low: int = 0


class AdminClient:
    """Admin commands over one or more servers."""

    def __init__(self, servers: str | Sequence[str] | None = None, *, timeout: float = 5.0,
                 ssl: _ssl.SSLContext | None = None) -> None:
        self.servers = normalize_servers(servers)
        self.timeout = timeout
        self.ssl = ssl

    def command(self, line: str) -> list[AdminReply]:
        return [admin_command(s, line, timeout=self.timeout, ssl=self.ssl) for s in self.servers]

    def status(self, replies: list[AdminReply] | None = None) -> dict[str, FunctionStatus]:
        """``status`` summed over the servers, by function (lines that do not parse are skipped)."""
        out: dict[str, FunctionStatus] = {}
        for r in replies if replies is not None else self.command("status"):
            for row in _rows(status_row, r):
                fs = out.setdefault(row.function, FunctionStatus(row.function))
                fs.total += row.total
                fs.running += row.running
                fs.workers += row.workers
        return out

    def priority_status(self, replies: list[AdminReply] | None = None) -> dict[str, FunctionStatus]:
        """``prioritystatus`` summed over the servers, by function (lines that do not parse are skipped)."""
        out: dict[str, FunctionStatus] = {}
        for r in replies if replies is not None else self.command("prioritystatus"):
            for row in _rows(priority_row, r):
                fs = out.setdefault(row.function, FunctionStatus(row.function))
                fs.high += row.high
                fs.normal += row.normal
                fs.low += row.low
                fs.workers += row.workers
        return out

    # -- geartrain's own commands: what outlives a job (parsed by geartrain.outcome) ------------------------------
    def _answers(self, line: str, server: str | None = None) -> list[AdminReply]:
        """LINE's replies from SERVER (else every server); the first server's error raises ServerError (an ERR
        reply: the C gearmand's UNKNOWN_COMMAND too) or ConnectionLost."""
        replies = [admin_command(server, line, timeout=self.timeout, ssl=self.ssl)] if server else self.command(line)
        for reply in replies:
            if reply.error is not None:
                if not reply.raw:
                    raise ConnectionLost(f"{reply.server}: {reply.error}")
                listing(reply.raw, reply.server)  # raises the ERR as ServerError
        return replies

    def _one(self, target: int | str, server: str | None) -> str | None:
        """The server a failed job's id names (ids are per server): SERVER, or the only one."""
        if server is None and len(self.servers) > 1 and str(target).isdigit():
            raise ValueError(f"failed job {target}: ids are per server, name the server (one of "
                             f"{', '.join(self.servers)})")
        return server

    def failed(self, function: str | bytes | None = None) -> list[FailedEntry]:
        """Every server's failed-job registry (``failed list [FUNC]``), oldest first per server."""
        line = "failed list" + (" " + _word(function) if function is not None else "")
        return [entry for r in self._answers(line) for entry in parse_failed_list(r.raw, r.server)]

    def failed_job(self, id: int, server: str | None = None) -> FailedEntry:
        """One failed job with its payload and every try (``failed show ID``)."""
        (reply,) = self._answers(f"failed show {int(id)}", self._one(id, server) or self.servers[0])
        return parse_failed_show(reply.raw, reply.server)

    def requeue_failed(self, target: int | str | bytes, server: str | None = None) -> int:
        """Queue failed jobs again as new background jobs (``failed requeue ID|FUNC|all``); how many were. An id
        names one job of one server; a function name or ``all``, those of every server."""
        return sum(int(r.value or 0) for r in self._answers(f"failed requeue {_word(target)}",
                                                               self._one(target, server)))

    def discard_failed(self, target: int | str | bytes, server: str | None = None) -> int:
        """Forget failed jobs (``failed discard ID|FUNC|all``); how many were."""
        return sum(int(r.value or 0) for r in self._answers(f"failed discard {_word(target)}",
                                                               self._one(target, server)))

    def policy(self, function: str | bytes, words: str | None = None) -> dict[str, str]:
        """FUNCTION's policy in effect on each server (server -> its words, ``default`` or ``none``); with WORDS,
        first set its own on every server (``none`` drops it). A word the server cannot take raises ServerError
        naming it."""
        name = _word(function)
        if words is not None:
            self._answers(f"policy {name} {' '.join(words.split())}")
        return {r.server: r.value for r in self._answers(f"policy {name}")}

    def policies(self) -> dict[str, dict[str, str]]:
        """Each server's policies (server -> function -> words; ``*`` is the server's default)."""
        out: dict[str, dict[str, str]] = {}
        for reply in self._answers("policies"):
            rows = (line.partition(b"\t") for line in listing(reply.raw, reply.server))
            out[reply.server] = {name.decode(errors="replace"): words.decode(errors="replace")
                                 for name, _, words in rows}
        return out


def _rows(parse: Callable[[str], Any], reply: AdminReply) -> Iterator[Any]:
    """The rows of a reply's lines that PARSE reads (none for a failed reply)."""
    for line in reply.lines if reply.ok else []:
        try:
            yield parse(line)
        except ValueError:
            continue



def _word(value: int | str | bytes) -> str:
    """One word of an admin command line (a function name, an id, ``all``)."""
    text = value.decode() if isinstance(value, bytes) else str(value)
    if not text or len(text.split()) != 1:
        raise ValueError(f"{value!r}: the admin protocol takes one word without white space")
    return text
