"""Differential sessions: the same scripted conversation with two job servers, replies compared.

A session is data: a list of steps (open a connection, send packets or admin lines, read N reply
packets or a text reply, check that nothing else arrived, close). ``run`` plays it against one
server and returns a normalised transcript, one string per reply; two servers agree when their
transcripts are equal. Normalisation only removes what naturally differs between two servers:

* job handles become ``<H1>``, ``<H2>``... in order of first appearance (learned from
  JOB_CREATED / JOB_ASSIGN* replies); steps may use the same tokens to send a handle back, or
  ``<HELD>``: the oldest job the connection was assigned and has not finished yet;
* the file descriptor that starts each ``workers`` line becomes ``FD``;
* ``getpid`` and ``version`` replies keep their shape (``OK <digits>\\n``) but not their value;
* listings that gearmand prints in hash-table order (``status``, ``prioritystatus``, ``show jobs``,
  ``show unique jobs``, ``workers``) are compared as sorted lines.

Everything else is compared byte for byte: packet types and every argument, text lines with their
line endings.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field

from geartrain.protocol import T

from .wire import Wire, WireError

# -- steps ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Open:
    """Open connection CONN."""

    conn: str


@dataclass(frozen=True)
class Close:
    """Close connection CONN (and give the server a moment to notice)."""

    conn: str
    settle: float = 0.2


@dataclass(frozen=True)
class Send:
    """Send one binary request packet; ``<Hn>`` in an argument is replaced by handle n."""

    conn: str
    ptype: int
    args: tuple[bytes, ...] = ()

    def __init__(self, conn: str, ptype: int, *args: bytes) -> None:
        object.__setattr__(self, "conn", conn)
        object.__setattr__(self, "ptype", ptype)
        object.__setattr__(self, "args", args)


@dataclass(frozen=True)
class Raw:
    """Send raw bytes (for malformed or wrong-magic packets)."""

    conn: str
    data: bytes


@dataclass(frozen=True)
class Recv:
    """Read one reply packet per listed type (checked against the oracle; ANY: whatever comes)."""

    conn: str
    types: tuple[int, ...]

    def __init__(self, conn: str, *types: int) -> None:
        object.__setattr__(self, "conn", conn)
        object.__setattr__(self, "types", types)


#: a Recv type that matches any packet
ANY = -100

#: in a Send argument: the oldest job this connection holds (assigned, not yet finished)
HELD = b"<HELD>"


@dataclass(frozen=True)
class Drain:
    """ECHO round trip on CONN, recording every packet that arrives before the echo."""

    conn: str


@dataclass(frozen=True)
class Admin:
    """Send an admin line (``\\r\\n`` appended unless EOL given) and read a one-line or listing reply."""

    conn: str
    line: bytes
    listing: bool = False
    eol: bytes = b"\r\n"


@dataclass(frozen=True)
class ReadText:
    """Read a text reply to an admin line sent by an earlier Raw step (CMD says how to normalise it)."""

    conn: str
    cmd: bytes
    listing: bool = False


@dataclass(frozen=True)
class Quiet:
    """Record whatever arrives on CONN within WAIT seconds (normally nothing)."""

    conn: str
    wait: float = 0.3


@dataclass(frozen=True)
class Sleep:
    """Let the server catch up (e.g. after a worker disconnects)."""

    seconds: float


Step = Open | Close | Send | Raw | Recv | Drain | Admin | ReadText | Quiet | Sleep


@dataclass
class Session:
    """A named scripted conversation."""

    name: str
    steps: list[Step]
    #: extra command-line options given to BOTH servers (gearmand's spelling, which geartrain accepts)
    args: tuple[str, ...] = ()
    #: options for geartrain only, matching what tests.conftest.start_gearmand always gives gearmand
    geartrain_args: tuple[str, ...] = ()


# -- running -------------------------------------------------------------------------------------

_ASSIGNS = {T.JOB_CREATED, T.JOB_ASSIGN, T.JOB_ASSIGN_UNIQ, T.JOB_ASSIGN_ALL}
_PROGRESS = {T.WORK_STATUS, T.WORK_DATA, T.WORK_WARNING}  # results that leave the job with the worker
_SORTED = (b"status", b"prioritystatus", b"show", b"workers")
_TOKEN_SEP = re.compile(rb"([\t \n\r]+)")


@dataclass
class Transcript:
    """What one server answered, normalised, plus the raw packet types seen per Recv step."""

    lines: list[str] = field(default_factory=list)
    types: list[tuple[int, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    handles: dict[bytes, bytes] = field(default_factory=dict)  # real handle -> token
    held: dict[str, list[bytes]] = field(default_factory=dict)  # connection -> jobs assigned, not finished

    def learn(self, handle: bytes) -> None:
        if handle not in self.handles:
            self.handles[handle] = b"<H%d>" % (len(self.handles) + 1)

    def token_to_handle(self, data: bytes) -> bytes:
        for real, token in self.handles.items():
            data = data.replace(token, real)
        return data

    def norm_arg(self, arg: bytes) -> bytes:
        return self.handles.get(arg, arg)

    def norm_text(self, data: bytes) -> bytes:
        parts = _TOKEN_SEP.split(data)
        return b"".join(self.handles.get(p, p) for p in parts)


def _name(ptype: int) -> str:
    try:
        return T(ptype).name
    except ValueError:
        return f"TYPE{ptype}"


def _show(arg: bytes) -> str:
    """An argument as text: its repr, or its size and digest when it is long."""
    if len(arg) <= 200:
        return repr(arg)
    return f"<{len(arg)} bytes sha256={hashlib.sha256(arg).hexdigest()[:16]}>"


def _norm_admin(cmd: bytes, lines: list[bytes], tr: Transcript) -> list[bytes]:
    word = cmd.strip().split(b" ")[0].lower() if cmd.strip() else b""
    out = [tr.norm_text(ln) for ln in lines]
    if word == b"workers":
        out = [re.sub(rb"^\d+ ", b"FD ", ln) for ln in out]
    if word == b"getpid":
        out = [re.sub(rb"^OK \d+\n$", b"OK <PID>\n", ln) for ln in out]
    if word == b"version":
        out = [re.sub(rb"^OK \S+\n$", b"OK <VERSION>\n", ln) for ln in out]
    if word in _SORTED and out and out[-1] == b".\n":
        out = sorted(out[:-1]) + [out[-1]]
    return out


def run(session: Session, host: str, port: int) -> Transcript:
    """Play SESSION against the server at HOST:PORT; return its normalised transcript."""
    tr = Transcript()
    conns: dict[str, Wire] = {}
    try:
        for i, step in enumerate(session.steps):
            try:
                _play(i, step, conns, tr, host, port)
            except (WireError, OSError) as exc:
                tr.lines.append(f"#{i} {type(step).__name__} {getattr(step, 'conn', '')}: ERROR {exc}")
                break
    finally:
        for w in conns.values():
            w.close()
    return tr


def _play(i: int, step: Step, conns: dict[str, Wire], tr: Transcript, host: str, port: int) -> None:
    if isinstance(step, Open):
        conns[step.conn] = Wire(host, port)
    elif isinstance(step, Close):
        conns.pop(step.conn).close()
        time.sleep(step.settle)
    elif isinstance(step, Sleep):
        time.sleep(step.seconds)
    elif isinstance(step, Send):
        args = [tr.token_to_handle(a) for a in step.args]
        if HELD in args:
            held = tr.held.get(step.conn)
            if not held:
                tr.lines.append(f"#{i} {step.conn} holds no job: {_name(step.ptype)} not sent")
                return
            handle = held[0] if step.ptype in _PROGRESS else held.pop(0)
            args = [handle if a == HELD else a for a in args]
        conns[step.conn].send(step.ptype, *args)
    elif isinstance(step, Raw):
        conns[step.conn].send_raw(tr.token_to_handle(step.data))
    elif isinstance(step, Recv):
        seen = []
        for want in step.types:
            ptype, args = conns[step.conn].packet()
            seen.append(ptype if want != ANY else ANY)
            _record(i, step.conn, ptype, args, tr)
        tr.types.append((i, step.types, tuple(seen)))
    elif isinstance(step, Drain):
        w = conns[step.conn]
        w.send(T.ECHO_REQ, b"drain")
        while True:
            ptype, args = w.packet()
            if ptype == T.ECHO_RES and args == (b"drain",):
                break
            _record(i, step.conn, ptype, args, tr)
    elif isinstance(step, Admin):
        w = conns[step.conn]
        line = tr.token_to_handle(step.line)
        w.send_raw(line + step.eol)
        lines = w.listing() if step.listing else [w.line()]
        for ln in _norm_admin(line, lines, tr):
            tr.lines.append(f"#{i} {step.conn} <- text {ln!r}")
    elif isinstance(step, ReadText):
        w = conns[step.conn]
        lines = w.listing() if step.listing else [w.line()]
        for ln in _norm_admin(step.cmd, lines, tr):
            tr.lines.append(f"#{i} {step.conn} <- text {ln!r}")
    elif isinstance(step, Quiet):
        got = conns[step.conn].quiet(step.wait)
        tr.lines.append(f"#{i} {step.conn} quiet {tr.norm_text(got)!r}")
    else:  # pragma: no cover - a new step type without a player
        raise TypeError(step)


def _record(i: int, conn: str, ptype: int, args: tuple[bytes, ...], tr: Transcript) -> None:
    if ptype in _ASSIGNS and args:
        tr.learn(args[0])
        if ptype != T.JOB_CREATED:
            tr.held.setdefault(conn, []).append(args[0])
    shown = " ".join(_show(tr.norm_arg(a)) for a in args)
    tr.lines.append(f"#{i} {conn} <- {_name(ptype)} {shown}".rstrip())


def type_mismatches(tr: Transcript) -> list[str]:
    """Recv steps whose packet types differ from what the session declares."""
    return [f"step #{i}: expected {[_name(t) for t in want]}, got {[_name(t) for t in got]}"
            for i, want, got in tr.types if want != got]
