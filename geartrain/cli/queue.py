"""`geartrain queue`: the durable queue outside a running server.

    geartrain queue copy FROM TO [--move] [--batch N]   every queued job of FROM written to TO
    geartrain queue count URL                           queued jobs per function (the total on stderr)

FROM, TO and URL are queue URLs as `geartrain serve --queue` takes them (sqlite:///PATH?table=T,
postgresql://…?table=T, mysql://…?table=T, redis://…?prefix=P), and a table or Redis prefix gearmand
wrote reads the same way. A job is keyed by unique and function: one already in TO is replaced by
FROM's, so running a copy twice does no more than once. ``--move`` deletes the jobs from FROM once all of
them are in TO. Stop the server of FROM first; a server of TO sees the jobs when it next starts.
(server/store/transfer.py; docs/migrating.md.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from ..server.store import transfer
from ..server.store.base import QueueConfigError, Store, StoreError
from ..server.store.url import store_from_url


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("queue", help="copy or move queued jobs between stores; count them",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="queue_command", metavar="COMMAND", required=True)
    cp = sub.add_parser("copy", help="write every queued job of FROM to TO (--move: and delete it from FROM)")
    cp.add_argument("source", metavar="FROM", help="queue URL to read")
    cp.add_argument("target", metavar="TO", help="queue URL to write")
    cp.add_argument("--move", action="store_true", help="delete the jobs from FROM once all are in TO")
    cp.add_argument("--batch", type=int, default=transfer.BATCH, metavar="N",
                    help=f"jobs per transaction (default {transfer.BATCH})")
    cp.set_defaults(func=run_copy)
    ct = sub.add_parser("count", help="queued jobs per function")
    ct.add_argument("url", metavar="URL", help="queue URL")
    ct.set_defaults(func=run_count)


def _open(url: str, role: str) -> Store:
    """The store of URL (not yet opened); SystemExit with the reason if it is no durable queue."""
    try:
        store = store_from_url(url)
    except (QueueConfigError, ValueError) as exc:
        raise SystemExit(f"geartrain queue: {role}: {exc}") from None
    if not store.durable:
        raise SystemExit(f"geartrain queue: {role}: {url} keeps nothing (a durable queue URL is needed)")
    path = getattr(store, "path", None)
    if role != "TO" and isinstance(path, str) and not os.path.exists(path):
        raise SystemExit(f"geartrain queue: {role}: no such SQLite file: {path}")
    return store


def _name(function: bytes) -> str:
    return function.decode("utf-8", "backslashreplace")


def run_copy(args: argparse.Namespace) -> int:
    if args.batch < 1:
        raise SystemExit("geartrain queue: --batch must be at least 1")
    if args.source == args.target:
        raise SystemExit("geartrain queue: FROM and TO are the same queue")
    source, target = _open(args.source, "FROM"), _open(args.target, "TO")

    async def main() -> transfer.Moved:
        await source.open()
        try:
            await target.open()
            try:
                return await transfer.copy(source, target, move=args.move, batch=args.batch)
            finally:
                await target.close()
        finally:
            await source.close()

    try:
        moved = asyncio.run(main())
    except StoreError as exc:
        print(f"geartrain queue: {exc}", file=sys.stderr)
        return 1
    for function, n in sorted(moved.functions.items()):
        print(f"{_name(function)}\t{n}")
    done = "moved" if args.move else "copied"
    print(f"{done} {moved.jobs} job(s) from {source.name} {source.where()} to {target.name} {target.where()}"
          + (f", and {moved.extras} kept result(s), failed job(s) and policies" if moved.extras else "")
          + (f"; deleted {moved.deleted} from {source.name}" if args.move else ""), file=sys.stderr)
    return 0


def run_count(args: argparse.Namespace) -> int:
    store = _open(args.url, "URL")

    async def main() -> dict[bytes, int]:
        await store.open()
        try:
            return await transfer.count(store)
        finally:
            await store.close()

    try:
        found = asyncio.run(main())
    except StoreError as exc:
        print(f"geartrain queue: {exc}", file=sys.stderr)
        return 1
    for function, n in sorted(found.items()):
        print(f"{_name(function)}\t{n}")
    print(f"{sum(found.values())} job(s) in {store.name} {store.where()}", file=sys.stderr)
    return 0
