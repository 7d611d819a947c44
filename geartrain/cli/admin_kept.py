"""`geartrain admin failed|policy|policies`: geartrain's own admin commands, on what outlives a job, as tables.

    geartrain admin failed [list [FUNC] | show ID | requeue ID|FUNC|all | discard ID|FUNC|all]
    geartrain admin policy FUNC [WORDS...|none]
    geartrain admin policies

Each server is asked (a failed job's id is a server's own: with several servers, ``show``, ``requeue`` and
``discard`` of an id need ``--servers`` naming one). The replies are parsed by geartrain.outcome, as
``AdminClient`` parses them; a server that cannot answer (the C gearmand does not know these commands) is
reported on stderr and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from ..adminclient import AdminClient, AdminReply
from ..errors import ServerError
from ..outcome import listing, parse_failed_list, parse_failed_show
from ._servers import servers_from_args

#: how `geartrain admin` renders a table: table(title, columns, rows)
Table = Callable[[str, list[str], list[list[Any]]], Any]

USAGE = {
    "failed": "failed [list [FUNC] | show ID | requeue ID|FUNC|all | discard ID|FUNC|all]",
    "policy": "policy FUNC [WORDS...|none]",
    "policies": "policies",
}


def line_of(command: str, words: list[str]) -> str | None:
    """The admin line for COMMAND and its WORDS, or None if they do not fit it."""
    if command == "policies":
        return "policies" if not words else None
    if command == "policy":
        return " ".join(["policy", *words]) if words else None
    sub = words[0].lower() if words else "list"
    if (sub == "list" and len(words) <= 2) or (sub in ("show", "requeue", "discard") and len(words) == 2):
        if sub == "show" and not words[1].isdigit():
            return None
        return " ".join(["failed", sub, *words[1:]])
    return None


def print_raw(replies: list[AdminReply]) -> None:
    """Each server's reply as it sent it (--raw), headed by the server's address when there are several."""
    for r in replies:
        if len(replies) > 1:
            sys.stdout.write(f"# {r.server}\n")
        if r.raw:
            sys.stdout.buffer.write(r.raw)
        elif r.error:
            sys.stdout.write(f"ERR {r.error}\n")
    sys.stdout.flush()


def _ago(when: float) -> str:
    seconds = max(0.0, time.time() - when)
    if seconds < 90:
        return f"{seconds:.0f}s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m ago"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def render(line: str, replies: list[AdminReply], _table: Table) -> list[Any]:
    """Rich renderables (made with _TABLE) for the answered replies (a server's ERR raises ServerError from the
    parser: the caller reports it)."""
    words = line.split()
    multi = len(replies) > 1
    out: list[Any] = []
    if words[0] == "failed" and words[1] == "list":
        rows = []
        for r in replies:
            for e in parse_failed_list(r.raw, r.server):
                rows.append(([r.server] if multi else []) + [e.id, _text(e.function), _text(e.unique), e.tries,
                                                             _ago(e.failed_at), e.size, e.error])
        out.append(_table("failed jobs", (["server"] if multi else []) +
                          ["id", "function", "unique", "tries", "failed", "bytes", "last error"], rows))
    elif words[0] == "failed" and words[1] == "show":
        for r in replies:
            e = parse_failed_show(r.raw, r.server)
            cut = f" (only {len(e.data)} kept: cannot be requeued)" if e.cut else ""
            fields = [["server", r.server], ["id", e.id], ["handle", _text(e.handle)], ["function", _text(e.function)],
                      ["unique", _text(e.unique)], ["priority", ("high", "normal", "low")[e.priority % 3]],
                      ["background", "yes" if e.background else "no"], ["failed", _ago(e.failed_at)],
                      ["bytes", f"{e.size}{cut}"], ["payload", _text(e.data[:200])]]
            out.append(_table(f"failed job {e.id}", ["field", "value"], fields))
            out.append(_table("tries", ["try", "started", "ran", "worker", "error"],
                              [[a.number, _ago(a.started), f"{a.ended - a.started:.3f}s", a.worker, a.error]
                               for a in e.attempts]))
    elif words[0] == "policies":
        rows = []
        for r in replies:
            for row in listing(r.raw, r.server):
                name, _, policy = row.partition(b"\t")
                shown = "(every function without its own)" if name == b"*" else _text(name)
                rows.append(([r.server] if multi else []) + [shown, _text(policy) or "default"])
        out.append(_table("policies", (["server"] if multi else []) + ["function", "policy"], rows))
    else:  # policy, failed requeue|discard: one OK line each
        for r in replies:
            listing(r.raw, r.server)  # an ERR raises
        title = {"requeue": "requeued", "discard": "discarded"}.get(words[1], line) if words[0] == "failed" else line
        out.append(_table(title, ["server", "reply"], [[r.server, r.value or "ok"] for r in replies]))
    return out


def main(args: argparse.Namespace, table: Table) -> int:
    line = line_of(args.command, args.args)
    if line is None:
        print(f"geartrain admin: usage: geartrain admin {USAGE[args.command]}", file=sys.stderr)
        return 2
    client = AdminClient(servers_from_args(args), timeout=args.timeout)
    words = line.split()
    if len(client.servers) > 1 and words[0] == "failed" and words[1] != "list" and words[2].isdigit():
        print(f"geartrain admin: failed job {words[2]}: ids are per server; name one with --servers "
              f"(one of {', '.join(client.servers)})", file=sys.stderr)
        return 2
    replies = client.command(line)
    answered = [r for r in replies if r.ok]
    if args.raw:
        print_raw(replies)
    elif answered:
        from rich.console import Console

        console = Console()
        try:
            for renderable in render(line, answered, table):
                console.print(renderable)
        except ServerError as exc:  # pragma: no cover - an ERR is not ok, so it is not among the answered
            print(f"geartrain admin: {exc}", file=sys.stderr)
            return 1
    for r in replies:
        if not r.ok and not args.raw:
            print(f"geartrain admin: {r.server}: {r.error}", file=sys.stderr)
    return 0 if len(answered) == len(replies) else 1
