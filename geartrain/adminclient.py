"""Client side of gearmand's admin text protocol (status, workers, cancel job, ...), for one or several servers.

``AdminClient(servers).command("status")`` sends the line to every server and returns one
``AdminReply`` per server (its raw text and parsed rows). List commands end with a ``.`` line;
the others answer with one ``OK ...`` or ``ERR ...`` line. Helpers sum ``status`` and
``prioritystatus`` over servers.
"""

from __future__ import annotations

import socket
import ssl as _ssl
from collections.abc import Sequence
from dataclasses import dataclass, field

from .transport import error_text, normalize_servers, parse_address

#: commands whose reply is a list ended by a "." line
LIST_COMMANDS = ("status", "workers", "prioritystatus", "show jobs", "show unique jobs")


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


def _is_list(command: str) -> bool:
    words = " ".join(command.lower().split())
    return words in LIST_COMMANDS


def admin_command(server: str, command: str, *, timeout: float = 5.0, ssl: _ssl.SSLContext | None = None) -> AdminReply:
    """Send one admin COMMAND line to SERVER and read its whole reply."""
    reply = AdminReply(server, command)
    host, port = parse_address(server)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        reply.error = f"cannot connect: {error_text(exc)}"
        return reply
    try:
        if ssl is not None:
            sock = ssl.wrap_socket(sock, server_hostname=host)
        sock.sendall(command.encode() + b"\r\n")
        is_list = _is_list(command)
        buf = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
            if not buf.endswith(b"\n"):
                continue
            if buf.startswith((b"OK", b"ERR")) and buf.count(b"\n") >= 1 and not (is_list and buf.startswith(b"OK")):
                break
            if not is_list:
                break
            if buf == b".\n" or buf.endswith(b"\n.\n"):
                break
    except OSError as exc:
        reply.error = f"connection failed: {error_text(exc)}"
        return reply
    finally:
        sock.close()
    reply.raw = buf
    reply.answered = bool(buf)
    text = buf.decode(errors="replace")
    lines = [ln.rstrip("\r") for ln in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    if is_list and lines and lines[-1] == ".":
        lines.pop()
    reply.lines = lines
    if lines and lines[0].startswith("ERR"):
        parts = lines[0].split(" ", 2)
        reply.error = " ".join(p.replace("+", " ") for p in parts[1:]) or "ERR"
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


def _ints(parts: list[str]) -> list[int]:
    out = []
    for p in parts:
        try:
            out.append(int(p))
        except ValueError:
            out.append(0)
    return out


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
        """``status`` summed over the servers, by function."""
        out: dict[str, FunctionStatus] = {}
        for r in replies if replies is not None else self.command("status"):
            for line in r.lines if r.ok else []:
                parts = line.split("\t")
                if len(parts) < 4:
                    continue
                total, running, workers = _ints(parts[1:4])
                fs = out.setdefault(parts[0], FunctionStatus(parts[0]))
                fs.total += total
                fs.running += running
                fs.workers += workers
        return out

    def priority_status(self, replies: list[AdminReply] | None = None) -> dict[str, FunctionStatus]:
        """``prioritystatus`` summed over the servers, by function."""
        out: dict[str, FunctionStatus] = {}
        for r in replies if replies is not None else self.command("prioritystatus"):
            for line in r.lines if r.ok else []:
                parts = line.split("\t")
                if len(parts) < 5:
                    continue
                high, normal, low, workers = _ints(parts[1:5])
                fs = out.setdefault(parts[0], FunctionStatus(parts[0]))
                fs.high += high
                fs.normal += normal
                fs.low += low
                fs.workers += workers
        return out
