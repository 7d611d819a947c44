"""`geartrain submit`: run jobs from the command line, with the flags of the C `gearman` tool.

    geartrain submit -f FUNC [--servers h:p,...] [-b] [-I|-L] [-u UNIQUE] [-n|-N] [-P] [-s] [DATA ...]

Each DATA is one job (for every -f); with none, stdin is read (all of it, or one job per line with
-n/-N). Results go to stdout as the workers sent them; WORK_DATA as it arrives. When stderr is a
terminal, progress (WORK_STATUS) is shown there between outputs, and on a terminal a result that does
not end with a newline is followed by one (piped output gets the workers' bytes only). Exit status 1
if any job failed or raised (the error on stderr).
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


class _Screen:
    """Where submit's output goes: results and WORK_DATA to stdout, messages to stderr, and, when stderr is a
    terminal, a progress bar per job that sends WORK_STATUS.

    The bar (rich, transient) erases the lines it drew when it is taken down, so it is shown only between
    outputs: it is taken down before anything is written, drawn again at the next WORK_STATUS, and never
    started on a line that holds output. What was printed stays on screen.
    """

    def __init__(self) -> None:
        self.out = sys.stdout.buffer
        self.out_tty = sys.stdout.isatty()
        self.bars = sys.stderr.isatty()
        self.bar: Any = None
        self.ids: dict[int, Any] = {}
        self.jobs: dict[int, tuple[str, int, int]] = {}  # id(job) -> (function, numerator, denominator)
        self.line_open = False  # the last byte written to stdout was not a newline

    def write(self, data: bytes) -> None:
        self.pause()
        if data:
            self.out.write(data)
            self.out.flush()
            self.line_open = not data.endswith(b"\n")

    def message(self, text: str) -> None:
        """A line on stderr (an error or a warning), on a line of its own on a terminal."""
        self.pause()
        self._end_line()
        print(text, file=sys.stderr, flush=True)

    def status(self, job: Any, numerator: int, denominator: int) -> None:
        if not self.bars:
            return
        self.jobs[id(job)] = (job.function.decode(errors="replace"), numerator, denominator)
        if self.bar is None:
            from rich.console import Console
            from rich.progress import Progress

            self._end_line()
            self.bar = Progress(console=Console(stderr=True), transient=True, redirect_stdout=False,
                                redirect_stderr=False)
            self.ids = {}
            self.bar.start()
        for key, (name, num, den) in self.jobs.items():
            if key not in self.ids:
                self.ids[key] = self.bar.add_task(name, total=den or None)
            self.bar.update(self.ids[key], completed=num, total=den or None)

    def ended(self, job: Any) -> None:
        """JOB has ended: its bar is not drawn again."""
        self.jobs.pop(id(job), None)

    def pause(self) -> None:
        """Take the bar down (it erases only the lines it drew)."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def _end_line(self) -> None:
        # output that does not end with a newline would share its line with what comes next on the terminal
        if self.line_open and self.out_tty:
            self.out.write(b"\n")
            self.out.flush()
            self.line_open = False

    def close(self) -> None:
        self.pause()
        self._end_line()


async def _run(args: argparse.Namespace) -> int:
    priority = "high" if args.high else "low" if args.low else None
    timeout = args.timeout / 1000 if args.timeout else None
    status = 0
    workloads = _workloads(args)
    screen = _Screen()

    def on_data(job: Any, data: bytes) -> None:
        screen.write(data)

    def on_warning(job: Any, data: bytes) -> None:
        screen.message(f"warning: {data.decode(errors='replace')}")

    try:
        async with AsyncClient(servers_from_args(args)) as client:
            jobs = []
            for data in workloads:
                for fn in args.function:
                    try:
                        job = await client.submit_job(fn, data, unique=args.unique, priority=priority,
                                                      background=args.background, when=args.at,
                                                      on_data=on_data, on_warning=on_warning,
                                                      on_status=screen.status)
                    except GearmanError as exc:
                        screen.message(f"geartrain submit: {fn}: {exc}")
                        return 1
                    jobs.append((fn, job))
            for fn, job in jobs:
                try:
                    if job.background:
                        screen.write(await job.created(timeout) + b"\n")
                        continue
                    result = await job.result(timeout)
                    if args.verbose:
                        screen.message(f"Task created: {job.handle.decode(errors='replace')}")
                except JobException as exc:
                    screen.message(f"geartrain submit: {fn}: job raised: {exc.data.decode(errors='replace')}")
                    status = 1
                    continue
                except GearmanError as exc:
                    screen.message(f"geartrain submit: {fn}: {exc}")
                    status = 1
                    continue
                finally:
                    screen.ended(job)
                if args.prefix:
                    result = fn.encode() + b": " + result
                if (args.lines or args.lines_strip or args.prefix) and not result.endswith(b"\n"):
                    result += b"\n"
                screen.write(result)
    finally:
        screen.close()
    return status


def main(args: argparse.Namespace) -> int:
    try:
        return int(run(_run(args)))  # type: ignore[arg-type]
    except KeyboardInterrupt:
        return 130
    except (TimeoutError, GearmanError, OSError) as exc:
        print(f"geartrain submit: {exc}", file=sys.stderr)
        return 1
