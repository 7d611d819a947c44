"""`geartrain top`: a live terminal view of one or several job servers.

    geartrain top [--servers h:p,...] [-n SECONDS] [--once]

Every refresh sends the admin text command ``status`` to each server (so it works against the C
gearmand too) and shows per function: jobs (queued + running, as ``status`` counts them), running,
waiting, workers, and the rate at which the function's job count changes (jobs/s, from the last two
refreshes: positive while its queue grows, negative while workers drain it). ``--once`` prints one
frame and exits: status 0 when every server answered, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..adminclient import admin_command
from ..protocol.admin_parse import status_row
from ._servers import add_server_options, servers_from_args


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("top", help="live view of job servers: functions, jobs, running, workers, rates",
                              add_help=False, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_server_options(p)
    p.add_argument("-n", "--interval", type=float, default=1.0, metavar="SECONDS",
                   help="seconds between refreshes (default 1)")
    p.add_argument("--once", action="store_true", help="print one frame and exit (1 if a server did not answer)")
    p.add_argument("-t", "--timeout", type=float, default=3.0, metavar="SECONDS",
                   help="give up on a server that does not answer within SECONDS (default 3)")
    p.set_defaults(func=main)


@dataclass
class Sample:
    """One server's ``status`` at one time."""

    at: float
    rows: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    error: str | None = None


@dataclass
class ServerView:
    address: str
    version: str | None
    sample: Sample
    rates: dict[str, float | None]


def rates(before: Sample | None, now: Sample) -> dict[str, float | None]:
    """Change of each function's job count per second between two samples (None without a previous one)."""
    out: dict[str, float | None] = {}
    dt = now.at - before.at if before is not None else 0.0
    for name, (total, _, _) in now.rows.items():
        if before is None or before.error is not None or dt <= 0:
            out[name] = None
        else:
            old = before.rows.get(name)
            out[name] = (total - (old[0] if old else 0)) / dt
    return out


def parse_status(lines: list[str]) -> dict[str, tuple[int, int, int]]:
    """The ``status`` listing as {function: (jobs, running, workers)}; malformed lines are skipped."""
    rows: dict[str, tuple[int, int, int]] = {}
    for line in lines:
        try:
            row = status_row(line)
        except ValueError:
            continue
        rows[row.function] = (row.total, row.running, row.workers)
    return rows


class Top:
    """Polls the servers (one admin connection per command, as gearadmin) and keeps the last samples."""

    def __init__(self, servers: list[str], timeout: float, clock: Any = time.monotonic) -> None:
        self.servers = servers
        self.timeout = timeout
        self.versions: dict[str, str] = {}
        self.previous: dict[str, Sample] = {}
        self.clock = clock

    def sample(self, server: str) -> Sample:
        at = self.clock()
        if server not in self.versions:
            reply = admin_command(server, "version", timeout=self.timeout)
            if not reply.ok:
                return Sample(at, error=reply.error)
            self.versions[server] = reply.value or "?"
        reply = admin_command(server, "status", timeout=self.timeout)
        if not reply.ok:
            return Sample(at, error=reply.error)
        return Sample(at, parse_status(reply.lines))

    def poll(self) -> list[ServerView]:
        views = []
        for server in self.servers:
            sample = self.sample(server)
            if sample.error is not None:
                self.versions.pop(server, None)
            views.append(ServerView(server, self.versions.get(server), sample,
                                    rates(self.previous.get(server), sample)))
            self.previous[server] = sample
        return views


def _rate(value: float | None) -> Text:
    if value is None:
        return Text("–", style="dim")
    if abs(value) < 0.005:
        return Text("0", style="dim")
    text = f"{value:+.1f}" if abs(value) >= 10 else f"{value:+.2f}"
    return Text(text, style="red" if value > 0 else "green")


def render(views: list[ServerView], now: str | None = None) -> RenderableType:
    """One frame: a table of every function of every server, and a line per server."""
    several = len(views) > 1
    table = Table(title=f"geartrain top · {now or time.strftime('%H:%M:%S')}", title_justify="left",
                  expand=False, header_style="bold")
    if several:
        table.add_column("server", no_wrap=True)
    table.add_column("function", no_wrap=True, overflow="ellipsis", max_width=48)
    for name in ("jobs", "running", "waiting", "workers"):
        table.add_column(name, justify="right")
    table.add_column("jobs Δ/s", justify="right")
    lines = []
    for view in views:
        sample = view.sample
        if sample.error is not None:
            lines.append(Text.assemble((f"{view.address}", "bold"), ("  unreachable: ", "red"), sample.error))
            continue
        jobs = sum(r[0] for r in sample.rows.values())
        running = sum(r[1] for r in sample.rows.values())
        workers = sum(r[2] for r in sample.rows.values())
        lines.append(Text.assemble((f"{view.address}", "bold"), f"  {view.version or '?'}  ",
                                   f"{len(sample.rows)} functions, {jobs} jobs, {running} running, "
                                   f"{workers} worker registrations"))
        order = sorted(sample.rows.items(), key=lambda item: (-item[1][0], item[0]))
        for name, (total, run, avail) in order:
            cells: list[RenderableType] = []
            if several:
                cells.append(view.address)
            cells += [Text(name), str(total), str(run), str(total - run),
                      str(avail), _rate(view.rates.get(name))]
            table.add_row(*cells)
    return Group(table, *lines)


def main(args: argparse.Namespace) -> int:
    try:
        servers = servers_from_args(args)
    except ValueError as exc:
        print(f"geartrain top: {exc}", file=sys.stderr)
        return 2
    top = Top(servers, args.timeout)
    console = Console()
    try:
        if args.once:
            views = top.poll()
            console.print(render(views))
            return 0 if all(v.sample.error is None for v in views) else 1
        interval = max(args.interval, 0.1)
        with Live(render(top.poll()), console=console, auto_refresh=False, screen=False) as live:
            while True:
                time.sleep(interval)
                live.update(render(top.poll()), refresh=True)
    except KeyboardInterrupt:
        return 0
