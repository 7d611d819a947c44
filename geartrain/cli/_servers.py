"""Server-list options shared by `geartrain submit`, `work`, `admin` and `top` (as the C tools spell them).

``--servers h:p,h:p`` (repeatable), or ``-h HOST`` / ``-p PORT``, or the GEARMAN_SERVER environment
variable (``host:port,host:port``); the default is 127.0.0.1:4730. A bad port (not 1-65535) is refused
as a usage error, naming the option it came from.
"""

from __future__ import annotations

import argparse
import os

from ..transport import DEFAULT_PORT, format_address, normalize_servers, parse_port


def _port(text: str) -> int:
    try:
        return parse_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _servers(text: str) -> str:
    try:
        normalize_servers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--help", action="help", help="show this help and exit")
    parser.add_argument("--servers", "--server", action="append", metavar="HOST:PORT,...", type=_servers,
                        help="job servers (default: $GEARMAN_SERVER, else 127.0.0.1:4730)")
    parser.add_argument("-h", "--host", dest="host", help="job server host (as the gearman tool)")
    parser.add_argument("-p", "--port", dest="port", type=_port, help="job server port (as the gearman tool)")
    parser.set_defaults(_parser=parser)


def servers_from_args(args: argparse.Namespace) -> list[str]:
    if args.servers:
        return normalize_servers(",".join(args.servers))
    if os.environ.get("GEARMAN_SERVER") and not (args.host or args.port):
        try:
            return normalize_servers(os.environ["GEARMAN_SERVER"])
        except ValueError as exc:
            args._parser.error(f"GEARMAN_SERVER={os.environ['GEARMAN_SERVER']}: {exc}")
    if args.host or args.port:
        return [format_address(args.host or "127.0.0.1", args.port or DEFAULT_PORT)]
    return normalize_servers(None)
