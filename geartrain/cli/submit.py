"""`geartrain submit`: run jobs from the command line, with the flags of the C `gearman` tool.

    geartrain submit -f FUNC [--servers h:p,...] [-b] [-I|-L] [-u UNIQUE] [-n|-N] [-P] [-s] [DATA ...]

Each DATA is one job (for every -f); with none, stdin is read (all of it, or one job per line with
-n/-N). Results go to stdout; WORK_DATA as it arrives. Progress (WORK_STATUS) is shown on stderr
when it is a terminal. Exit status 1 if any job failed or raised (the error on stderr).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..client import AsyncClient
from ..errors import GearmanError, JobException
from ..transport import run
from ._servers import add_server_options, servers_from_args


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("submit", help="submit jobs (like `gearman`)", add_help=False,
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_server_options(p)
    p.add_argument("-f", "--function", action="append", required=True, help="function name (repeatable)")
    p.add_argument("-b", "--background", action="store_true", help="background job: print its handle and return")
    prio = p.add_mutually_exclusive_group()
    prio.add_argument("-I", "--high", action="store_true", help="high priority")
    prio.add_argument("-L", "--low", action="store_true", help="low priority")
    p.add_argument("-u", "--unique", help="unique id of the job")
    lines = p.add_mutually_exclusive_group()
    lines.add_argument("-n", "--lines", action="store_true", help="one job per line of stdin")
    lines.add_argument("-N", "--lines-strip", action="store_true", help="as -n, without the newline")
    p.add_argument("-P", "--prefix", action="store_true", help="prefix each result with the function name")
    p.add_argument("-s", "--no-stdin", action="store_true", help="send the job without reading stdin (empty data)")
    p.add_argument("-t", "--timeout", type=int, metavar="MS", help="give up waiting after MS milliseconds")
    p.add_argument("--at", type=int, metavar="EPOCH", help="run at this Unix time (a background job)")
    p.add_argument("-v", "--verbose", action="store_true", help="print each job's handle on stderr")
    p.add_argument("data", nargs="*", help="job payloads (default: stdin)")
    p.set_defaults(func=main)


def _workloads(args: argparse.Namespace) -> list[bytes]:
    if args.data:
        return [d.encode() for d in args.data]
    if args.no_stdin:
        return [b""]
    raw = sys.stdin.buffer.read()
    if args.lines or args.lines_strip:
        out = raw.splitlines(keepends=not args.lines_strip)
        return [ln for ln in out if ln.strip()]
    return [raw]


class _Progress:
    """A rich progress bar on stderr per job that reports WORK_STATUS (only on a terminal)."""

    def __init__(self) -> None:
        self.bar = None
        self.ids: dict[int, Any] = {}
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress

            self.bar = Progress(console=Console(stderr=True), transient=True)

    def __enter__(self) -> _Progress:
        if self.bar:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar:
            self.bar.stop()

    def status(self, job: Any, numerator: int, denominator: int) -> None:
        if not self.bar:
            return
        key = id(job)
        if key not in self.ids:
            self.ids[key] = self.bar.add_task(job.function.decode(errors="replace"), total=denominator or None)
        self.bar.update(self.ids[key], completed=numerator, total=denominator or None)


async def _run(args: argparse.Namespace) -> int:
    priority = "high" if args.high else "low" if args.low else None
    timeout = args.timeout / 1000 if args.timeout else None
    out = sys.stdout.buffer
    status = 0
    workloads = _workloads(args)

    def on_data(job: Any, data: bytes) -> None:
        out.write(data)
        out.flush()

    def on_warning(job: Any, data: bytes) -> None:
        sys.stderr.write(f"warning: {data.decode(errors='replace')}\n")

    async with AsyncClient(servers_from_args(args), wait_for_server=5.0) as client:
        with _Progress() as progress:
            jobs = []
            for data in workloads:
                for fn in args.function:
                    try:
                        job = await client.submit_job(fn, data, unique=args.unique, priority=priority,
                                                      background=args.background, when=args.at,
                                                      on_data=on_data, on_warning=on_warning,
                                                      on_status=progress.status)
                    except GearmanError as exc:
                        print(f"geartrain submit: {fn}: {exc}", file=sys.stderr)
                        return 1
                    jobs.append((fn, job))
            for fn, job in jobs:
                try:
                    if job.background:
                        handle = await job.created(timeout)
                        out.write(handle + b"\n")
                        continue
                    result = await job.result(timeout)
                    if args.verbose:
                        print(f"Task created: {job.handle.decode(errors='replace')}", file=sys.stderr)
                except JobException as exc:
                    print(f"geartrain submit: {fn}: job raised: {exc.data.decode(errors='replace')}",
                          file=sys.stderr)
                    status = 1
                    continue
                except GearmanError as exc:
                    print(f"geartrain submit: {fn}: {exc}", file=sys.stderr)
                    status = 1
                    continue
                if args.prefix:
                    out.write(fn.encode() + b": ")
                out.write(result)
                if (args.lines or args.lines_strip or args.prefix) and not result.endswith(b"\n"):
                    out.write(b"\n")
                out.flush()
    out.flush()
    return status


def main(args: argparse.Namespace) -> int:
    try:
        return int(run(_run(args)))  # type: ignore[arg-type]
    except KeyboardInterrupt:
        return 130
    except (TimeoutError, GearmanError, OSError) as exc:
        print(f"geartrain submit: {exc}", file=sys.stderr)
        return 1
