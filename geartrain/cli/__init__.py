"""The `geartrain` command: one sub-command per module in this package.

Each sub-command module defines ``add_parser(subparsers)``, which adds its parser and sets
``func`` (called with the parsed arguments, returning the exit status). Adding a command is adding
a module and its name to COMMANDS.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__

#: sub-command modules, in the order `--help` lists them (the benchmark is `make bench`: bench/run.py)
COMMANDS = ["serve", "submit", "work", "result", "admin", "top", "queue"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geartrain", description="Gearman job server, client and worker.")
    parser.add_argument("-V", "--version", action="version", version=f"geartrain {__version__}")
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f".{name}", __name__).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse leaves a sub-command's unknown arguments to the top-level parser, whose usage would be shown
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        target = subparsers.choices.get(args.subcommand) if args.subcommand else None
        (target or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    return int(args.func(args) or 0)
