"""`geartrain admin`: the job servers' admin commands as readable tables, summed over several servers.

    geartrain admin [--servers h:p,...] [--raw] status|workers|prioritystatus|show-jobs|show-unique-jobs|
                    cancel-job HANDLE|maxqueue FUNC N|create-function FUNC|drop-function FUNC|version|getpid
    geartrain admin failed [list [FUNC] | show ID | requeue ID|FUNC|all | discard ID|FUNC|all]
    geartrain admin policy FUNC [WORDS...|none]
    geartrain admin policies

``--raw`` prints each server's reply text as it came. ``failed``, ``policy`` and ``policies`` are geartrain's
own commands (admin_kept.py): the failed-job registry and the functions' retry and result policies.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..adminclient import AdminClient, AdminReply
from ..protocol.admin_parse import job_row, worker_row
from . import admin_kept
from ._servers import add_server_options, servers_from_args

#: sub-command -> (admin protocol line, number of arguments)
COMMANDS: dict[str, tuple[str, int]] = {
    "status": ("status", 0),
    "workers": ("workers", 0),
    "prioritystatus": ("prioritystatus", 0),
    "show-jobs": ("show jobs", 0),
    "show-unique-jobs": ("show unique jobs", 0),
    "cancel-job": ("cancel job", 1),
    "maxqueue": ("maxqueue", 2),
    "create-function": ("create function", 1),
    "drop-function": ("drop function", 1),
    "version": ("version", 0),
    "getpid": ("getpid", 0),
}


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("admin", help="admin commands (status, workers, ...) as tables", add_help=False,
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_server_options(p)
    p.add_argument("--raw", action="store_true", help="print the servers' text replies as they are")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each server")
    p.add_argument("command", choices=sorted([*COMMANDS, *admin_kept.USAGE]), metavar="COMMAND",
                   help=", ".join([*COMMANDS, *admin_kept.USAGE]))
    p.add_argument("args", nargs="*", help="the command's arguments")
    p.set_defaults(func=main)


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="right" if i and all(isinstance(r[i], int) for r in rows) else "left")
    for row in rows:
        table.add_row(*(str(c) for c in row))
    return table


def _render(command: str, client: AdminClient, replies: list[AdminReply]) -> Any:
    multi = len(replies) > 1
    if command == "status":
        rows = [[f.function, f.total - f.running, f.running, f.workers]
                for f in sorted(client.status(replies).values(), key=lambda f: f.function)]
        return _table("status" + (f" (sum of {len(replies)} servers)" if multi else ""),
                      ["function", "queued", "running", "workers"], rows)
    if command == "prioritystatus":
        rows = [[f.function, f.high, f.normal, f.low, f.workers]
                for f in sorted(client.priority_status(replies).values(), key=lambda f: f.function)]
        return _table("priority status" + (f" (sum of {len(replies)} servers)" if multi else ""),
                      ["function", "high", "normal", "low", "workers"], rows)
    if command == "workers":
        rows = []
        for r in replies:
            for line in r.lines:
                try:
                    w = worker_row(line)
                except ValueError:  # shown as it came
                    rows.append([r.server, line, "", "", ""])
                    continue
                rows.append([r.server, w.fd, w.address, w.client_id, " ".join(w.functions)])
        return _table("workers", ["server", "fd", "address", "client id", "functions"], rows)
    if command == "show-jobs":
        rows = []
        for r in replies:
            for line in r.lines:
                try:
                    j = job_row(line)
                except ValueError:
                    rows.append([r.server, line, "", "", ""])
                    continue
                rows.append([r.server, j.handle, j.retries, j.ignore, j.queued])
        return _table("jobs", ["server", "handle", "retries", "ignore", "queued"], rows)
    if command == "show-unique-jobs":
        rows = [[r.server, line] for r in replies for line in r.lines]
        return _table("unique jobs", ["server", "unique"], rows)
    rows = [[r.server, r.value if r.ok else "", "ok" if r.ok else r.error] for r in replies]
    return _table(command, ["server", "reply", "result"], rows)


def main(args: argparse.Namespace) -> int:
    if args.command in admin_kept.USAGE:
        return admin_kept.main(args, _table)
    line, nargs = COMMANDS[args.command]
    if len(args.args) != nargs:
        print(f"geartrain admin: {args.command} takes {nargs} argument(s)", file=sys.stderr)
        return 2
    client = AdminClient(servers_from_args(args), timeout=args.timeout)
    full = " ".join([line, *args.args])
    replies = client.command(full)
    if args.command == "cancel-job":
        # a handle lives on one server: success anywhere is success
        failed = all(not r.ok for r in replies)
    else:
        failed = any(not r.ok for r in replies)
    if args.raw:
        admin_kept.print_raw(replies)
    else:
        from rich.console import Console

        if any(r.answered for r in replies):  # no table at all when no server answered: only the errors
            Console().print(_render(args.command, client, replies))
        for r in replies:
            if not r.ok and (args.command != "cancel-job" or not r.answered):
                print(f"geartrain admin: {r.server}: {r.error}", file=sys.stderr)
    return 1 if failed else 0
