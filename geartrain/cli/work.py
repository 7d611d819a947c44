"""`geartrain work`: serve a function by running a command per job, as `gearman -w` does.

    geartrain work -f FUNC [--servers h:p,...] [-c COUNT] [-n] [--processes N] [--concurrency K] -- COMMAND ARGS...

Each job runs COMMAND with the payload on stdin; its stdout is the result; a non-zero exit fails
the job (its output is sent first as WORK_DATA). With -n each output line goes as WORK_DATA as it
is printed. Without a COMMAND the payload itself is the result (an echo worker). SIGTERM stops
gracefully: running jobs finish, then the worker exits. --processes N runs N worker processes.

On stderr it says when it connects, when a connection is lost, and once (until it gets through) when
a server cannot be reached and it keeps retrying; -v adds a line per job.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
from typing import Any

from ..errors import WorkFailed
from ..transport import error_text, new_event_loop
from ..worker import AsyncWorker, WorkerJob
from ._servers import add_server_options, servers_from_args


def _function_name(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("a function name cannot be empty")
    return text


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("work", help="run a command for each job (like `gearman -w`)", add_help=False,
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_server_options(p)
    p.add_argument("-f", "--function", action="append", required=True, type=_function_name,
                   help="function name (repeatable)")
    p.add_argument("-c", "--count", type=int, help="exit after COUNT jobs (per process)")
    lines = p.add_mutually_exclusive_group()
    lines.add_argument("-n", "--lines", action="store_true", help="send each output line as WORK_DATA")
    lines.add_argument("-N", "--lines-strip", action="store_true", help="as -n, without the newline")
    p.add_argument("--processes", type=int, default=1, metavar="N", help="run N worker processes")
    p.add_argument("--concurrency", type=int, default=1, metavar="K", help="jobs at once per process")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="register with CAN_DO_TIMEOUT")
    p.add_argument("--client-id", help="SET_CLIENT_ID (shown by `admin workers`)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also log every job (start, end, time) and every failed connect on stderr")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS... (default: echo the payload)")
    p.set_defaults(func=main)


def _command(args: argparse.Namespace) -> list[str]:
    """The job command given after ``--`` (empty: echo the payload)."""
    return args.command[1:] if args.command[:1] == ["--"] else args.command


class CommandError(Exception):
    """The job's command could not be started (its text names the command and why)."""


def _check_command(command: list[str]) -> str | None:
    """Why COMMAND cannot be run (checked once at start), or None."""
    name = command[0]
    if shutil.which(name) is not None:
        return None
    if os.sep in name:
        if not os.path.exists(name):
            return f"cannot run {name}: no such file"
        return f"cannot run {name}: not an executable file"
    return f"cannot run {name}: not found in PATH"


def _make_handler(command: list[str], lines: bool, strip: bool) -> Any:
    if not command:
        def echo(job: WorkerJob) -> bytes:
            return job.raw
        return echo

    async def run_command(job: WorkerJob) -> bytes:
        try:
            proc = await asyncio.create_subprocess_exec(*command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        except OSError as exc:
            raise CommandError(f"cannot run {command[0]}: {error_text(exc)}") from None
        assert proc.stdin is not None and proc.stdout is not None
        stdin = proc.stdin

        async def feed() -> None:
            # alongside the reading, so a big payload and a big output cannot block each other
            try:
                stdin.write(job.raw)
                await stdin.drain()
            except (BrokenPipeError, ConnectionResetError, RuntimeError):
                pass  # the command exited (or closed stdin) without reading it all
            finally:
                try:
                    stdin.close()
                except (BrokenPipeError, ConnectionResetError, RuntimeError):
                    pass

        feeder = asyncio.ensure_future(feed())
        output = b""
        try:
            if lines:
                async for line in proc.stdout:
                    job.send_data(line.rstrip(b"\n") if strip else line)
            else:
                output = await proc.stdout.read()
            code = await proc.wait()
            await feeder
        except asyncio.CancelledError:
            feeder.cancel()
            proc.kill()
            await proc.wait()
            raise
        if code != 0:
            if output:
                job.send_data(output)
            raise WorkFailed(f"command exited with {code}")
        return output

    return run_command


def _serve(args: argparse.Namespace) -> int:
    command = _command(args)
    # the echo handler (no command) is a plain function: run it inline even with several jobs in flight
    worker = AsyncWorker(servers_from_args(args), concurrency=args.concurrency, client_id=args.client_id,
                         threads=False)
    handler = _make_handler(command, args.lines, args.lines_strip)
    for fn in args.function:
        worker.register(fn, handler, timeout=args.timeout)
    loop = new_event_loop()
    try:
        loop.run_until_complete(worker.work(args.count, handle_signals=True))
    finally:
        loop.close()
    return 0


def _child_argv(args: argparse.Namespace) -> list[str]:
    argv = [sys.executable, "-m", "geartrain", "work", "--servers", ",".join(servers_from_args(args))]
    for fn in args.function:
        argv += ["-f", fn]
    if args.count:
        argv += ["-c", str(args.count)]
    if args.lines:
        argv.append("-n")
    if args.lines_strip:
        argv.append("-N")
    argv += ["--concurrency", str(args.concurrency)]
    if args.timeout:
        argv += ["--timeout", str(args.timeout)]
    if args.client_id:
        argv += ["--client-id", args.client_id]
    if args.verbose:
        argv.append("-v")
    command = _command(args)
    return argv + ["--", *command] if command else argv


def _supervise(args: argparse.Namespace) -> int:
    """Run N worker processes; pass SIGTERM/SIGINT on to them and wait for all of them."""
    procs = [subprocess.Popen(_child_argv(args)) for _ in range(args.processes)]

    def forward(signum: int, frame: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        codes = [p.wait() for p in procs]
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return max(codes) if codes else 0


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format=f"geartrain work[{os.getpid()}]: %(message)s")
    logging.getLogger("geartrain").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    command = _command(args)
    problem = _check_command(command) if command else None
    if problem:
        print(f"geartrain work: {problem}", file=sys.stderr)
        return 2
    if args.processes > 1:
        return _supervise(args)
    try:
        return _serve(args)
    except KeyboardInterrupt:
        return 130
