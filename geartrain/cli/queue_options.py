"""`geartrain serve`'s options that choose the durable queue, and the Store they build.

cli/serve.py calls add_store_arguments(parser) and store_from_args(args); every backend's
options (ours and gearmand's spellings) live here, so the server knows nothing of them: it gets a
Store (server/store/url.py turns a queue URL into one).

``--queue URL`` (see url.py) is ours. gearmand's spellings work as well::

    -q libsqlite3 --libsqlite3-db FILE [--libsqlite3-table T]
    -q Postgres   --libpq-conninfo 'host=… dbname=…' [--libpq-table T]
    -q MySQL      --mysql-host H --mysql-port P --mysql-user U --mysql-password PW --mysql-db DB [--mysql-table T]
    -q redis      --redis-server H --redis-port P [--redis-password PW] [--redis-prefix P]
    -q builtin

Without ``--queue`` the queue is SQLite at url.default_sqlite_path(port), unless gearmand options
of one backend are given, which then choose it (``--libsqlite3-db F`` alone means ``-q libsqlite3``).
"""

from __future__ import annotations

import argparse
import logging

from ..server.store.base import QueueConfigError, Store
from ..server.store.url import backend, default_sqlite_path, store_from_url

log = logging.getLogger("geartrain.store")

#: gearmand's -q names (case-insensitive) and ours, by backend
_NAMES = {
    "memory": "memory", "builtin": "memory",
    "libsqlite3": "sqlite", "sqlite": "sqlite", "sqlite3": "sqlite",
    "postgres": "postgres", "postgresql": "postgres", "libpq": "postgres",
    "mysql": "mysql", "mariadb": "mysql",
    "redis": "redis", "hiredis": "redis",
}
_OPTION_OF = {"sqlite": ("libsqlite3_db", "libsqlite3_table"), "postgres": ("libpq_conninfo", "libpq_table"),
              "mysql": ("mysql_host", "mysql_port", "mysql_user", "mysql_password", "mysql_db", "mysql_table"),
              "redis": ("redis_server", "redis_port", "redis_password", "redis_prefix")}


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "durable queue",
        "where background jobs are kept so they survive a crash. URL: memory, sqlite:///PATH, "
        "postgresql://USER@HOST/DB, mysql://USER@HOST/DB, redis://HOST:PORT (?table=T / ?prefix=P); "
        "or gearmand's -q libsqlite3|Postgres|MySQL|redis|builtin with its --libsqlite3-*/--libpq-*/"
        "--mysql-*/--redis-* options. Default: SQLite in $XDG_STATE_HOME/geartrain/queue-PORT.sqlite. "
        "PostgreSQL, MySQL and Redis need their driver: pip install 'geartrain[postgres]' / [mysql] / [redis].")
    group.add_argument("-q", "--queue", "--queue-type", dest="queue", default=None, metavar="URL",
                       help="queue URL or gearmand queue type (default: sqlite at the default path)")
    sq = parser.add_argument_group("gearmand libsqlite3 queue")
    sq.add_argument("--libsqlite3-db", metavar="FILE", help="database file")
    sq.add_argument("--libsqlite3-table", metavar="T", help="table (default gearman_queue)")
    sq.add_argument("--store-queue-on-shutdown", action="store_true",
                    help="accepted for gearmand compatibility; geartrain always stores jobs as they come")
    pg = parser.add_argument_group("gearmand Postgres queue")
    pg.add_argument("--libpq-conninfo", metavar="CONNINFO", help="libpq connection string or postgresql:// URL")
    pg.add_argument("--libpq-table", metavar="T", help="table (default queue)")
    my = parser.add_argument_group("gearmand MySQL queue")
    my.add_argument("--mysql-host", metavar="H", help="host (default localhost)")
    my.add_argument("--mysql-port", metavar="P", type=int, help="port (default 3306)")
    my.add_argument("--mysql-user", metavar="U")
    my.add_argument("--mysql-password", metavar="PW")
    my.add_argument("--mysql-db", metavar="DB")
    my.add_argument("--mysql-table", metavar="T", help="table (default gearman_queue)")
    rd = parser.add_argument_group("gearmand redis queue")
    rd.add_argument("--redis-server", metavar="H", help="host (default 127.0.0.1)")
    rd.add_argument("--redis-port", metavar="P", type=int, help="port (default 6379)")
    rd.add_argument("--redis-password", metavar="PW")
    rd.add_argument("--redis-prefix", metavar="P", help="key prefix (default _gear_)")


def store_from_args(args: argparse.Namespace) -> Store:
    """The Store the options name (not yet opened); exits with a message on a bad option."""
    try:
        return _store(args)
    except (QueueConfigError, ValueError) as exc:
        raise SystemExit(f"geartrain serve: {exc}") from None


def _given(args: argparse.Namespace, kind: str) -> bool:
    return any(getattr(args, name, None) not in (None, "") for name in _OPTION_OF[kind])


def _store(args: argparse.Namespace) -> Store:
    port = getattr(args, "port", None) or 4730
    queue = getattr(args, "queue", None)
    if getattr(args, "store_queue_on_shutdown", False):
        log.warning("--store-queue-on-shutdown ignored: geartrain stores each background job before JOB_CREATED")
    if queue is None:
        given = [kind for kind in _OPTION_OF if _given(args, kind)]
        if len(given) > 1:
            raise QueueConfigError(f"options of several queues given ({', '.join(given)}); choose one with -q")
        queue = given[0] if given else "sqlite"
    kind = _NAMES.get(queue.lower())
    if kind is None:
        return store_from_url(queue, port)
    for other in _OPTION_OF:
        if other != kind and _given(args, other):
            log.warning("-q %s: ignoring the %s queue options", queue, other)
    if kind == "memory":
        return store_from_url("memory", port)
    module = backend(kind)
    if kind == "sqlite":
        path = args.libsqlite3_db or default_sqlite_path(port)
        return module.SQLiteStore(path, args.libsqlite3_table or module.DEFAULT_TABLE)
    if kind == "postgres":
        return module.PostgresStore(module.parse_conninfo(args.libpq_conninfo or ""),
                                    args.libpq_table or module.DEFAULT_TABLE)
    if kind == "mysql":
        connect: dict = {"host": args.mysql_host or "localhost", "port": args.mysql_port or 3306}
        if args.mysql_user:
            connect["user"] = args.mysql_user
        if args.mysql_password:
            connect["password"] = args.mysql_password
        if args.mysql_db:
            connect["db"] = args.mysql_db
        return module.MySQLStore(connect, args.mysql_table or module.DEFAULT_TABLE)
    connect = {"host": args.redis_server or "127.0.0.1", "port": args.redis_port or 6379}
    if args.redis_password:
        connect["password"] = args.redis_password
    return module.RedisStore(connect, args.redis_prefix or module.DEFAULT_PREFIX)
