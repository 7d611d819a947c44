"""Command-line options that choose the durable queue, and the Store they build.

`geartrain serve` calls add_store_arguments(parser) and store_from_args(args); every backend's
options (ours and gearmand's spellings) live here, so the server knows nothing of them.
"""

from __future__ import annotations

import argparse

from .base import MemoryStore, Store


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("durable queue")
    group.add_argument("-q", "--queue", "--queue-type", dest="queue", default="memory", metavar="URL",
                       help="where background jobs are kept: memory")


def store_from_args(args: argparse.Namespace) -> Store:
    if args.queue in ("memory", "builtin"):
        return MemoryStore()
    raise SystemExit(f"geartrain serve: unknown queue {args.queue!r}")
