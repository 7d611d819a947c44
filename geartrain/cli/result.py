"""`geartrain result`: how a job stands, or how it ended if the server keeps its outcome.

    geartrain result [--servers h:p,...] HANDLE|UNIQUE [--wait SECONDS]

Asks geartrain's admin command ``result`` (a background job's outcome is kept while its function's policy
says ``keep=SECONDS``, or under ``serve --keep-results``). The result's data goes to stdout, the outcome (and
the error) to stderr. With ``--wait`` it asks again, less and less often, until the job ends or the time is
up, showing the job's state and progress on stderr when that is a terminal.

Exit status: 0 complete, 1 failed or exception, 2 unknown (no server knows the job, or none could be
asked), 3 not over yet.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..client import AsyncClient
from ..errors import GearmanError
from ..outcome import JobResult
from ..transport import run
from ._servers import add_server_options, servers_from_args

EXIT = {"complete": 0, "failed": 1, "exception": 1}
UNKNOWN, NOT_OVER = 2, 3


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("result", help="a job's state, or its kept outcome (geartrain servers)",
                              add_help=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_server_options(p)
    p.add_argument("key", metavar="HANDLE|UNIQUE", help="the job's handle, or its unique (the newest job with it)")
    p.add_argument("-w", "--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait up to SECONDS for the job to end (default: answer at once)")
    p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                   help="seconds to wait for a server to answer each time")
    p.set_defaults(func=main)


class _Progress:
    """The job's state and WORK_STATUS progress while waiting, on stderr when it is a terminal (rich)."""

    def __init__(self, key: str, wait: float) -> None:
        self.bar = None
        self.task: Any = None
        if wait > 0 and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                TextColumn("{task.fields[state]}"), TimeElapsedColumn(),
                                console=Console(stderr=True), transient=True)
            self.task = self.bar.add_task(key, total=None, state="asking")

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def update(self, result: JobResult) -> None:
        if self.bar is None:
            return
        state = result.state + (f" (try {result.tries})" if result.tries > 1 else "")
        numerator, denominator = result.progress or (0, 0)
        if denominator:
            state += f" {numerator}/{denominator}"
        self.bar.update(self.task, state=state, completed=numerator, total=denominator or None)


def describe(result: JobResult) -> str:
    """The line on stderr: the state, the tries when more than one, and the error."""
    text = result.state
    if result.tries > 1:
        text += f" after {result.tries} tries" if result.done else f" (try {result.tries})"
    if result.progress and result.progress[1]:
        text += f" {result.progress[0]}/{result.progress[1]}"
    if result.error and result.state != "failed":
        text += f": {result.error}"
    return text


async def _run(args: argparse.Namespace) -> int:
    client = AsyncClient(servers_from_args(args), connect_timeout=args.timeout)
    try:
        with _Progress(args.key, args.wait) as progress:
            result = await client.result(args.key, wait=args.wait, on_poll=progress.update)
    finally:
        await client.close()
    if result.ok:
        sys.stdout.buffer.write(result.data)
        sys.stdout.buffer.flush()
    print(describe(result), file=sys.stderr)
    return EXIT.get(result.state, NOT_OVER)


def main(args: argparse.Namespace) -> int:
    try:
        return int(run(_run(args)))  # type: ignore[arg-type]
    except KeyboardInterrupt:
        return 130
    except (TimeoutError, GearmanError, OSError, ValueError) as exc:  # JobUnknown, or no server to ask
        print(f"geartrain result: {exc}", file=sys.stderr)
        return UNKNOWN
