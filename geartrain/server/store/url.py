"""Queue URLs: ``sqlite:///PATH``, ``postgresql://…``, ``mysql://…``, ``redis://…``, ``memory`` -> a Store.

    memory | builtin                                  no durability (gearmand's builtin queue)
    sqlite:///relative/path.sqlite?table=T            SQLAlchemy's convention: three slashes, then the path
    sqlite:////absolute/path.sqlite                   (four slashes = absolute); ``sqlite:PATH`` also works
        ?synchronous=FULL                             fsync every commit (default NORMAL, see sqlite.py)
    postgresql://user:pw@host:5432/db?table=queue     also postgres://; asyncpg's URL parameters (sslmode, …)
    mysql://user:pw@host:3306/db?table=gearman_queue  also mariadb://; ?unix_socket=PATH
    redis://[:pw@]host:6379[/db]?prefix=_gear_        also rediss:// (TLS) and unix:///path.sock?db=0

Tables default to gearmand's names (``gearman_queue`` for SQLite and MySQL, ``queue`` for
PostgreSQL) and the Redis prefix to gearmand's ``_gear_``, so pointing geartrain at a gearmand
queue needs no options beyond the URL. A parameter a backend does not know is refused
(QueueConfigError), as is a backend whose database driver is not installed; the drivers are
imported only when their backend is asked for (``backend``), so this module, SQLite and the
memory queue need none of them.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from .base import MemoryStore, QueueConfigError, Store

#: the backend modules whose database driver is an optional dependency: (driver module, extra)
DRIVERS = {"postgres": ("asyncpg", "postgres"), "mysql": ("asyncmy", "mysql"), "redis": ("redis", "redis")}
#: the URL scheme a user writes for each backend, for messages
_SCHEME = {"postgres": "postgresql", "mysql": "mysql", "redis": "redis", "sqlite": "sqlite"}

#: query parameters each backend's URL takes; anything else is refused
PARAMETERS = {
    "sqlite": ("table", "synchronous"),
    # ours, then what asyncpg reads from a URL (any other parameter it would send to the server as
    # a setting, which refuses unknown names at every connection attempt)
    "postgres": ("table", "application_name", "host", "port", "user", "password", "passfile", "dbname", "database",
                 "sslmode", "sslcert", "sslkey", "sslrootcert", "sslcrl", "sslpassword", "sslnegotiation",
                 "ssl_min_protocol_version", "ssl_max_protocol_version", "target_session_attrs", "krbsrvname",
                 "gsslib", "service"),
    "mysql": ("table", "unix_socket"),
    "redis": ("prefix", "db"),
}


def backend(kind: str) -> ModuleType:
    """The module of backend KIND (sqlite, postgres, mysql, redis), imported now; QueueConfigError
    naming the extra to install when its database driver is missing."""
    try:
        return importlib.import_module(f".{kind}", __package__)
    except ImportError as exc:
        driver, extra = DRIVERS.get(kind, (None, None))
        if driver is None or not (exc.name or "").partition(".")[0] == driver:
            raise
        raise QueueConfigError(f"the {_SCHEME[kind]} queue needs {driver}: pip install 'geartrain[{extra}]'") from None


def default_sqlite_path(port: int = 4730) -> Path:
    """``$XDG_STATE_HOME/geartrain/queue-PORT.sqlite`` (XDG_STATE_HOME defaults to ~/.local/state).

    One file per port, so two servers on one machine never replay each other's jobs."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "geartrain" / f"queue-{port}.sqlite"


def store_from_url(url: str, port: int = 4730) -> Store:
    """The Store a queue URL names (not yet opened)."""
    text = url.strip()
    scheme = text.split(":", 1)[0].lower() if ":" in text else text.lower()
    if scheme in ("memory", "builtin"):
        return MemoryStore()
    if scheme in ("sqlite", "sqlite3"):
        return _sqlite(text, port)
    if scheme in ("postgres", "postgresql"):
        return _postgres(text)
    if scheme in ("mysql", "mariadb"):
        return _mysql(text)
    if scheme in ("redis", "rediss", "unix"):
        return _redis(text)
    raise QueueConfigError(
        f"unknown queue {url!r}: use memory, sqlite:///PATH, postgresql://…, mysql://… or redis://…")


def check_parameters(kind: str, names: Iterable[str]) -> None:
    """Refuse a query parameter that backend KIND does not take, naming it and the ones it takes."""
    for name in names:
        if name not in PARAMETERS[kind]:
            raise QueueConfigError(f"unknown parameter {name!r} in the {_SCHEME[kind]} queue URL; "
                                   f"it takes: {', '.join(PARAMETERS[kind])}")


def _query(kind: str, query: str) -> dict[str, str]:
    params = dict(parse_qsl(query, keep_blank_values=True))
    check_parameters(kind, params)
    return params


def _sqlite(url: str, port: int) -> Store:
    sqlite = backend("sqlite")
    rest = url.split(":", 1)[1]
    rest, _, query = rest.partition("?")
    if rest.startswith("//"):
        rest = rest[2:]
        if rest and not rest.startswith("/"):
            raise QueueConfigError(
                f"{url!r}: a sqlite URL has no host; write sqlite:///relative or sqlite:////absolute")
        rest = rest[1:]
    params = _query("sqlite", query)
    path = Path(os.path.expanduser(unquote(rest))) if rest else default_sqlite_path(port)
    return sqlite.SQLiteStore(path, params.get("table", sqlite.DEFAULT_TABLE), params.get("synchronous", "NORMAL"))


def _postgres(url: str) -> Store:
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    check_parameters("postgres", (k for k, _ in params))
    postgres = backend("postgres")
    table = dict(params).get("table", postgres.DEFAULT_TABLE)
    rest = urlencode([(k, v) for k, v in params if k != "table"])
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, rest, ""))
    return postgres.PostgresStore({"dsn": dsn}, table)


def _mysql(url: str) -> Store:
    parts = urlsplit(url)
    params = _query("mysql", parts.query)
    mysql = backend("mysql")
    connect: dict[str, Any] = {"host": parts.hostname or "localhost", "port": parts.port or 3306}
    if parts.username:
        connect["user"] = unquote(parts.username)
    if parts.password is not None:
        connect["password"] = unquote(parts.password)
    if parts.path.strip("/"):
        connect["db"] = unquote(parts.path.strip("/"))
    if "unix_socket" in params:
        connect["unix_socket"] = params["unix_socket"]
    return mysql.MySQLStore(connect, params.get("table", mysql.DEFAULT_TABLE))


def _redis(url: str) -> Store:
    parts = urlsplit(url)
    params = _query("redis", parts.query)
    redis = backend("redis")
    connect: dict[str, Any] = {}
    if parts.scheme == "unix":
        connect["unix_socket_path"] = unquote(parts.path)
        db = params.get("db", "0")
    else:
        connect["host"] = parts.hostname or "127.0.0.1"
        connect["port"] = parts.port or 6379
        db = parts.path.strip("/") or params.get("db", "0")
        if parts.scheme == "rediss":
            connect["ssl"] = True
    try:
        connect["db"] = int(db)
    except ValueError:
        raise QueueConfigError(f"{url!r}: the Redis database must be a number, not {db!r}") from None
    if parts.username:
        connect["username"] = unquote(parts.username)
    if parts.password:
        connect["password"] = unquote(parts.password)
    return redis.RedisStore(connect, params.get("prefix", redis.DEFAULT_PREFIX))
