"""Client side of gearmand's admin text protocol (status, workers, cancel job, ...), for one or several servers.

``AdminClient(servers).command("status")`` sends the line to every server and returns one
``AdminReply`` per server (its raw text and its lines). How a reply ends and how its rows read is
protocol/admin_parse.py's. Helpers sum ``status`` and ``prioritystatus`` over servers.
"""

from __future__ import annotations

import socket
import ssl as _ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

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


def _rows(parse: Callable[[str], Any], reply: AdminReply) -> Iterator[Any]:
    """The rows of a reply's lines that PARSE reads (none for a failed reply)."""
    for line in reply.lines if reply.ok else []:
        try:
            yield parse(line)
        except ValueError:
            continue
