"""`geartrain serve`: run the job server, with gearmand's option names where they mean the same thing.

A systemd unit or init script written for gearmand needs only its program name changed. Options
gearmand has that make no sense here (-t threads, -R round-robin, --coredump) are accepted and
explained in --help.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys

from .. import __version__
from ..server.state import valid_prefix
from .queue_options import add_store_arguments, store_from_args

VERBOSE_LEVELS = ["FATAL", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG"]


def _default_port() -> int:
    env = os.environ.get("GEARMAND_PORT", "")
    return int(env) if env.isdigit() else 4730


def _size(text: str) -> int:
    """A byte count, with an optional K, M or G suffix (powers of 1024)."""
    text = text.strip().upper().removesuffix("B")
    mult = 1
    for suffix, m in (("K", 1024), ("M", 1024**2), ("G", 1024**3)):
        if text.endswith(suffix):
            text, mult = text[:-1], m
            break
    return int(text) * mult


def _port(text: str) -> int:
    """A TCP port to listen on: 1-65535, or 0 for one the system picks."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range (1-65535, or 0 for any free one)")
    return port


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "serve",
        help="run the job server (a drop-in replacement for gearmand)",
        description="Run the Gearman job server. Option names follow gearmand's.",
        fromfile_prefix_chars="@",
    )
    net = p.add_argument_group("network")
    net.add_argument("-L", "--listen", default="127.0.0.1", metavar="ADDRESS",
                     help="address to listen on (default 127.0.0.1, this machine only; -L 0.0.0.0 or -L :: for all "
                          "interfaces)")
    net.add_argument("-p", "--port", type=_port, default=None,
                     help="port (default: $GEARMAND_PORT, else 4730)")
    net.add_argument("-b", "--backlog", type=int, default=None, metavar="N",
                     help="listen backlog (default: the system's maximum, net.core.somaxconn; gearmand's is 32, "
                          "too short for many workers reconnecting at once)")
    net.add_argument("--keepalive", action="store_true", help="turn on TCP keepalive on client connections")
    net.add_argument("--keepalive-idle", type=int, default=-1, metavar="SECONDS",
                     help="TCP_KEEPIDLE (-1: system default)")
    net.add_argument("--keepalive-interval", type=int, default=-1, metavar="SECONDS",
                     help="TCP_KEEPINTVL (-1: system default)")
    net.add_argument("--keepalive-count", type=int, default=-1, metavar="N", help="TCP_KEEPCNT (-1: system default)")
    net.add_argument("--max-connections", type=int, default=0, metavar="N",
                     help="refuse (and log) connections beyond N (default 0: no limit besides file descriptors)")
    net.add_argument("--max-packet-size", type=_size, default=64 * 1024 * 1024, metavar="BYTES",
                     help="largest packet accepted; a bigger one closes the connection (default 64M)")
    net.add_argument("--http-port", type=_port, default=0, metavar="PORT",
                     help="also serve HTTP on PORT: gearmand's HTTP job submission (POST /FUNCTION), a JSON API, "
                          "Prometheus /metrics and a dashboard at / (default 0: off)")
    net.add_argument("--http-listen", default=None, metavar="ADDRESS",
                     help="address of the HTTP listener (default: the same as --listen)")
    # limits of the HTTP listener, and of what all connections may hold (docs/observability.md, README Security)
    net.add_argument("--http-max-body", type=_size, default=16 * 1024 * 1024, metavar="BYTES",
                     help="largest HTTP request body (a job's payload); a bigger one gets 413, refused on its "
                          "Content-Length before it is read (default 16M, never more than --max-packet-size)")
    net.add_argument("--http-header-timeout", type=float, default=60.0, metavar="SECONDS",
                     help="close an HTTP connection that is idle, or sends a request head or body part, no faster "
                          "than this (default 60)")
    net.add_argument("--http-allowed-hosts", default="", metavar="NAME,...",
                     help="Host names the HTTP listener answers besides localhost and loopback addresses; a "
                          "listener on loopback addresses (or any, when this is given) refuses others with 403 "
                          "(DNS rebinding). '*': answer any Host")
    net.add_argument("--max-buffered-input", type=_size, default=None, metavar="BYTES",
                     help="at most this many bytes of unfinished input (partial Gearman packets, HTTP bodies) held "
                          "over all connections; what would pass it is refused (Gearman: ERROR and close; HTTP: 503)"
                          " (default: a quarter of the machine's memory, at most 1G; 0: no limit)")
    net.add_argument("--busy-poll", type=float, default=50.0, metavar="MICROSECONDS",
                     help="after each write, keep polling the sockets this long instead of sleeping, so a reply "
                          "that comes back at once skips a sleep and a wake-up: lower latency, and draining workers "
                          "wait less, for up to that much CPU per write (default 50, 0: off)")
    net.add_argument("--grab-wait", type=float, default=150.0, metavar="MICROSECONDS",
                     help="a worker's grab that finds no job waits this long for one, the loop polling meanwhile, "
                          "before it gets NO_JOB: a job submitted just after it asked goes to it without its "
                          "NO_JOB, PRE_SLEEP, NOOP, GRAB round trip (default 150; 0: to the end of the loop turn)")
    net.add_argument("-f", "--file-descriptors", type=int, default=0, metavar="N",
                     help="raise the open-file limit to N")

    jobs = p.add_argument_group("jobs")
    jobs.add_argument("-j", "--job-retries", type=int, default=0, metavar="N",
                      help="fail a job (WORK_FAIL to its clients) after N workers died or timed out running it "
                           "(default 0: retry forever, as gearmand 1.1.20; -1 is the same)")
    jobs.add_argument("--job-handle-prefix", default=None, metavar="PREFIX",
                      help="job handles are PREFIX:N (default H:<hostname>)")
    jobs.add_argument("-w", "--worker-wakeup", type=int, default=None, metavar="N",
                      help="wake at most N sleeping workers (NOOP) per queued job; 0 wakes all of them "
                           "(default: 1, which avoids a NOOP/GRAB_JOB/NO_JOB storm with many idle workers)")
    jobs.add_argument("--wakeup-timeout", type=float, default=0.1, metavar="SECONDS",
                      help="a worker woken (NOOP) for a job that has not asked for one (GRAB_JOB) within SECONDS "
                           "passes its wake-up on to another sleeping worker, so a worker that never reads cannot "
                           "hold a job back (default 0.1; 0: never)")
    after = p.add_argument_group(
        "results, retries and failed jobs",
        "a policy is words name=value: tries, delay, backoff (fixed|exponential), factor, cap, jitter, foreground "
        "(yes|no), keep (seconds a background job's outcome is kept); the README's 'What outlives a job'")
    after.add_argument("--default-policy", default="", metavar="WORDS",
                       help="the policy of every function without one of its own (default: none: failed jobs are "
                            "not tried again, outcomes are not kept, as gearmand)")
    after.add_argument("--policy", nargs=2, action="append", default=[], metavar=("FUNCTION", "WORDS"),
                       help="FUNCTION's own policy, its words laid over the default policy's; applied at every "
                            "start, over one set with the admin command 'policy' (repeat for more functions)")
    after.add_argument("--keep-results", type=float, default=None, metavar="SECONDS",
                       help="keep the outcome of every background job for SECONDS (the default policy's keep=)")
    after.add_argument("--keep-results-max", type=int, default=100_000, metavar="N",
                       help="keep at most N outcomes, the oldest dropped first (default 100000)")
    after.add_argument("--keep-results-bytes", type=_size, default=64 << 20, metavar="BYTES",
                       help="keep at most BYTES of outcome data, the oldest dropped first (default 64M)")
    after.add_argument("--failed-max", type=int, default=10_000, metavar="N",
                       help="the failed-job registry holds at most N jobs, the oldest dropped first (default 10000)")
    after.add_argument("--failed-max-payload", type=_size, default=1 << 20, metavar="BYTES",
                       help="a failed job's payload is kept up to BYTES; a longer one is cut (and cannot be "
                            "requeued) (default 1M)")
    jobs.add_argument("--exceptions", action="store_true",
                      help="send WORK_EXCEPTION to every client (as if each had sent OPTION_REQ exceptions)")
    jobs.add_argument("-R", "--round-robin", action="store_true",
                      help="accepted for gearmand compatibility: round-robin across a worker's functions is always on")

    proc = p.add_argument_group("process")
    proc.add_argument("-l", "--log-file", default="stderr", metavar="FILE",
                      help="log to FILE, or 'stderr' (default), or 'none'; SIGHUP reopens it")
    proc.add_argument("--verbose", default="NOTICE", type=str.upper, choices=VERBOSE_LEVELS, metavar="LEVEL",
                      help="log level: " + ", ".join(VERBOSE_LEVELS) + " (default NOTICE)")
    proc.add_argument("--log-format", default="plain", choices=["plain", "json"],
                      help="one line per event: plain text (default) or one JSON object per line")
    proc.add_argument("-v", dest="more_verbose", action="count", default=0,
                      help="one level more verbose per -v (deprecated in gearmand; use --verbose)")
    proc.add_argument("-P", "--pid-file", default=None, metavar="FILE", help="write the process id to FILE")
    proc.add_argument("-d", "--daemon", action="store_true", help="detach and run in the background")
    proc.add_argument("-u", "--user", default=None, help="switch to this user after listening (when run as root)")
    proc.add_argument("-t", "--threads", type=int, default=None, metavar="N",
                      help="accepted for gearmand compatibility and ignored: geartrain runs one asyncio event loop "
                           "in one thread (gearmand's job logic is single-threaded too)")
    proc.add_argument("--syslog", action="store_true",
                      help="also log to syslog (and so to the journal), as gearmand: ident geartrain[PID], facility "
                           "user, each level at its syslog priority")
    proc.add_argument("--syslog-socket", default=None, metavar="PATH",
                      help="the syslog socket --syslog writes to (default /dev/log)")
    proc.add_argument("--coredump", action="store_true", help="accepted for gearmand compatibility; ignored")
    proc.add_argument("--config-file", default=None, metavar="FILE",
                      help="read more options from FILE (whitespace-separated, as gearmand's; the command line wins)")
    proc.add_argument("-V", "--version", action="version", version=f"geartrain {__version__}")
    proc.add_argument("--check-args", action="store_true", help="check the options and exit (as gearmand)")
    jobs.add_argument("--hashtable-buckets", type=int, default=991, metavar="N",
                      help="as gearmand's: only changes the order `show jobs` lists jobs in (default 991)")
    jobs.add_argument("-r", "--protocol", action="append", default=[], metavar="NAME",
                      help="gearmand's protocol plugins: 'http' is served with --http-port here")
    add_security_arguments(p)
    add_store_arguments(p)
    p.set_defaults(func=main, serve_parser=p)
    return p


def options_from_args(args: argparse.Namespace):  # noqa: ANN201 - imported lazily
    from ..server.app import SYSLOG_SOCKET, Options
    from ..server.listen import system_backlog

    verbose = args.verbose
    if args.more_verbose:
        i = min(VERBOSE_LEVELS.index(verbose) + args.more_verbose, len(VERBOSE_LEVELS) - 1)
        verbose = VERBOSE_LEVELS[i]
    wakeup = 1 if args.worker_wakeup is None else max(args.worker_wakeup, 0) & 0xFF
    return Options(
        listen=args.listen,
        port=args.port if args.port is not None else _default_port(),
        backlog=args.backlog if args.backlog is not None else system_backlog(),
        job_retries=max(args.job_retries, 0),
        handle_prefix=args.job_handle_prefix.encode() if args.job_handle_prefix is not None else None,
        worker_wakeup=wakeup,
        exceptions=args.exceptions,
        max_packet_size=args.max_packet_size,
        max_connections=args.max_connections,
        keepalive=args.keepalive,
        keepalive_idle=args.keepalive_idle,
        keepalive_interval=args.keepalive_interval,
        keepalive_count=args.keepalive_count,
        log_file=args.log_file,
        verbose=verbose,
        pid_file=args.pid_file,
        log_format=args.log_format,
        syslog=(args.syslog_socket or SYSLOG_SOCKET) if args.syslog else None,
        http_port=args.http_port,
        http_listen=args.http_listen,
        http_max_body=max(args.http_max_body, 1),
        http_header_timeout=max(args.http_header_timeout, 0.1),
        http_allowed_hosts=tuple(name.strip() for name in args.http_allowed_hosts.split(",") if name.strip()),
        max_buffered_input=-1 if args.max_buffered_input is None else max(args.max_buffered_input, 0),
        hash_buckets=max(args.hashtable_buckets, 1),
        busy_poll=max(args.busy_poll, 0.0) / 1e6,
        grab_wait=max(args.grab_wait, 0.0) / 1e6,
        wake_timeout=max(args.wakeup_timeout, 0.0),
        **policy_options(args),
        **security_options(args),
        store=store_from_args(args),
    )


def policy_options(args: argparse.Namespace) -> dict:
    """The Options of the 'results, retries and failed jobs' group; a policy that cannot be read stops here."""
    from ..server.policy import Policy, PolicyError
    from ..server.policy import parse as policy_parse

    def read(option: str, words: str, base: Policy | None) -> Policy:
        try:
            return policy_parse(words, base)
        except PolicyError as exc:
            raise SystemExit(f"geartrain serve: {option}: {exc}") from None

    default = read("--default-policy", args.default_policy, None) if args.default_policy else None
    if args.keep_results is not None:
        default = read("--keep-results", f"keep={args.keep_results}", default)
    policies = {name.encode(): read(f"--policy {name}", words, default) for name, words in args.policy}
    if default == Policy():
        default = None
    return {"default_policy": default, "policies": policies, "keep_results_max": max(args.keep_results_max, 0),
            "keep_results_bytes": max(args.keep_results_bytes, 0), "failed_max": max(args.failed_max, 0),
            "failed_max_payload": max(args.failed_max_payload, 0)}


def add_security_arguments(p: argparse.ArgumentParser) -> None:
    """TLS (gearmand's option names), access control and the limits against stalled or hostile peers."""
    sec = p.add_argument_group("TLS, access control and limits (see the README's Security section)")
    sec.add_argument("--ssl", action="store_true",
                     help="speak TLS on the Gearman port (files: the --ssl-* options, else $GEARMAND_CA_CERTIFICATE, "
                          "$GEARMAND_SERVER_PEM, $GEARMAND_SERVER_KEY, else gearmand's /etc/ssl/certs/gearmand*)")
    sec.add_argument("--ssl-ca-file", default=None, metavar="FILE",
                     help="CA certificates that client certificates are checked against")
    sec.add_argument("--ssl-certificate", default=None, metavar="FILE", help="the server's certificate (PEM)")
    sec.add_argument("--ssl-key", default=None, metavar="FILE", help="the server certificate's private key (PEM)")
    sec.add_argument("--ssl-verify-client", default="none", choices=["none", "optional", "required"],
                     help="ask TLS clients for a certificate signed by --ssl-ca-file: none (default, as gearmand), "
                          "optional (checked when given), required (refuse clients without one)")
    sec.add_argument("--acl", default=None, metavar="FILE",
                     help="access control file (TOML): which functions each peer (by certificate name or address) "
                          "may register and submit, and who may run state-changing admin commands (default: open)")
    sec.add_argument("--admin-loopback-only", action="store_true",
                     help="only loopback peers may run admin commands that change state (cancel job, maxqueue, "
                          "shutdown, create/drop function)")
    sec.add_argument("--partial-timeout", type=float, default=60.0, metavar="SECONDS",
                     help="close (ERROR TIMEOUT, logged) a connection that holds an unfinished packet, or an "
                          "unfinished TLS handshake, this long (slowloris; default 60, 0: never)")
    sec.add_argument("--idle-timeout", type=float, default=0.0, metavar="SECONDS",
                     help="close a connection silent this long that is neither a worker nor waiting for a job "
                          "(default 0: never)")
    sec.add_argument("--max-output-buffer", type=_size, default=256 * 1024 * 1024, metavar="BYTES",
                     help="close (and log) a connection whose unread replies pass BYTES (default 256M)")


def security_options(args: argparse.Namespace) -> dict:
    """The Options fields of add_security_arguments; a bad TLS or ACL file stops the server with its reason."""
    from ..server.acl import ACLError
    from ..server.acl import load as load_acl
    from ..server.tls import TLSError, TLSOptions, server_context

    out: dict = {
        "admin_loopback_only": args.admin_loopback_only,
        "partial_timeout": max(args.partial_timeout, 0.0),
        "idle_timeout": max(args.idle_timeout, 0.0),
        "write_hard_limit": max(args.max_output_buffer, 1024),
        "write_high": min(4 * 1024 * 1024, max(args.max_output_buffer, 1024) // 2),
    }
    try:
        if args.ssl:
            out["ssl_context"] = server_context(TLSOptions(args.ssl_ca_file, args.ssl_certificate, args.ssl_key,
                                                           args.ssl_verify_client))
        if args.acl:
            acl = out["acl"] = load_acl(args.acl)
            if acl.uses_certificates and not (args.ssl and args.ssl_verify_client != "none"):
                print("geartrain serve: warning: the ACL names client certificates but clients are not asked for "
                      "one (use --ssl --ssl-verify-client optional|required)", file=sys.stderr)
    except (TLSError, ACLError) as exc:
        raise SystemExit(f"geartrain serve: {exc}") from None
    return out


def _merge_config_file(args: argparse.Namespace) -> None:
    """Options from --config-file fill in whatever the command line left at its default."""
    import shlex

    parser = args.serve_parser
    try:
        with open(args.config_file) as fh:
            words = shlex.split(fh.read(), comments=True)
    except OSError as exc:
        raise SystemExit(f"geartrain serve: cannot read --config-file: {exc}") from None
    from_file = parser.parse_args(words)
    for name, value in vars(from_file).items():
        if name in ("func", "serve_parser", "config_file"):
            continue
        if getattr(args, name, None) == parser.get_default(name) and value != parser.get_default(name):
            setattr(args, name, value)


def main(args: argparse.Namespace) -> int:
    from ..server import app

    if args.config_file:
        _merge_config_file(args)
    for name in args.protocol:
        if name.lower() != "http":
            print(f"geartrain serve: unknown protocol {name!r} (gearmand's only plugin is http)", file=sys.stderr)
            return 2
        if not args.http_port:
            args.http_port = 8080  # gearmand's --http-port default

    if args.file_descriptors:
        try:
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            want = args.file_descriptors
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want) if os.geteuid() == 0 else hard))
        except (ValueError, OSError) as exc:
            print(f"geartrain serve: cannot set file descriptors to {args.file_descriptors}: {exc}", file=sys.stderr)
    if args.http_port:
        _need_extra("--http-port", "geartrain.server.http")
    options = options_from_args(args)
    if options.handle_prefix is not None and not valid_prefix(options.handle_prefix):
        print("geartrain serve: --job-handle-prefix is too long: handles (PREFIX:N) must stay within 64 bytes",
              file=sys.stderr)
        return 2
    if args.check_args:
        return 0
    if args.user:
        _switch_user(args.user)
    return app.run(options, daemon=args.daemon)


def _need_extra(option: str, module: str) -> None:
    """Stop with one line naming the extra to install when MODULE cannot be imported for lack of a
    dependency of the server extra (a plain `pip install geartrain` has the libraries and the CLI only)."""
    import importlib

    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.startswith("geartrain"):
            raise
        raise SystemExit(f"geartrain serve: {option} needs {exc.name}, which is not installed: "
                         "pip install 'geartrain[server]'") from None


def _switch_user(name: str) -> None:
    import pwd

    if os.geteuid() != 0:
        return
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise SystemExit(f"geartrain serve: no such user {name!r}") from None
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
