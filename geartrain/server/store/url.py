"""Queue URLs: ``sqlite:///PATH``, ``postgresql://…``, ``mysql://…``, ``redis://…``, ``memory`` -> a Store.

    memory | builtin                                  no durability (gearmand's builtin queue)
    sqlite:///relative/path.sqlite?table=T            SQLAlchemy's convention: three slashes, then the path
    sqlite:////absolute/path.sqlite                   (four slashes = absolute); ``sqlite:PATH`` also works
        ?synchronous=FULL                             fsync every commit (default NORMAL, see sqlite.py)
    postgresql://user:pw@host:5432/db?table=queue     also postgres://; other query parameters go to asyncpg
    mysql://user:pw@host:3306/db?table=gearman_queue  also mariadb://
    redis://[:pw@]host:6379[/db]?prefix=_gear_        also rediss:// (TLS) and unix:///path.sock?db=0

Tables default to gearmand's names (``gearman_queue`` for SQLite and MySQL, ``queue`` for
PostgreSQL) and the Redis prefix to gearmand's ``_gear_``, so pointing geartrain at a gearmand
queue needs no options beyond the URL.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from .base import MemoryStore, Store


class QueueURLError(ValueError):
    """A queue URL we cannot use."""


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
    raise QueueURLError(f"unknown queue {url!r}: use memory, sqlite:///PATH, postgresql://…, mysql://… or redis://…")


def _query(query: str) -> dict[str, str]:
    return dict(parse_qsl(query, keep_blank_values=True))


def _sqlite(url: str, port: int) -> Store:
    from .sqlite import DEFAULT_TABLE, SQLiteStore

    rest = url.split(":", 1)[1]
    rest, _, query = rest.partition("?")
    if rest.startswith("//"):
        rest = rest[2:]
        if rest and not rest.startswith("/"):
            raise QueueURLError(f"{url!r}: a sqlite URL has no host; write sqlite:///relative or sqlite:////absolute")
        rest = rest[1:]
    params = _query(query)
    path = Path(os.path.expanduser(unquote(rest))) if rest else default_sqlite_path(port)
    return SQLiteStore(path, params.get("table", DEFAULT_TABLE), params.get("synchronous", "NORMAL"))


def _postgres(url: str) -> Store:
    from .postgres import DEFAULT_TABLE, PostgresStore

    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    table = dict(params).get("table", DEFAULT_TABLE)
    rest = urlencode([(k, v) for k, v in params if k != "table"])
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, rest, ""))
    return PostgresStore({"dsn": dsn}, table)


def _mysql(url: str) -> Store:
    from .mysql import DEFAULT_TABLE, MySQLStore

    parts = urlsplit(url)
    params = _query(parts.query)
    connect: dict[str, Any] = {"host": parts.hostname or "localhost", "port": parts.port or 3306}
    if parts.username:
        connect["user"] = unquote(parts.username)
    if parts.password is not None:
        connect["password"] = unquote(parts.password)
    if parts.path.strip("/"):
        connect["db"] = unquote(parts.path.strip("/"))
    if "unix_socket" in params:
        connect["unix_socket"] = params["unix_socket"]
    return MySQLStore(connect, params.get("table", DEFAULT_TABLE))


def _redis(url: str) -> Store:
    from .redis import DEFAULT_PREFIX, RedisStore

    parts = urlsplit(url)
    params = _query(parts.query)
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
        raise QueueURLError(f"{url!r}: the Redis database must be a number, not {db!r}") from None
    if parts.username:
        connect["username"] = unquote(parts.username)
    if parts.password:
        connect["password"] = unquote(parts.password)
    return RedisStore(connect, params.get("prefix", DEFAULT_PREFIX))
