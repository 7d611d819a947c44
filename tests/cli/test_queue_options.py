"""gearmand's -q spellings and the --queue option build the right store, pointed at the right place."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from geartrain.cli.queue_options import add_store_arguments, store_from_args
from geartrain.server.store.base import MemoryStore
from geartrain.server.store.mysql import MySQLStore
from geartrain.server.store.postgres import PostgresStore
from geartrain.server.store.redis import RedisStore
from geartrain.server.store.sqlite import SQLiteStore
from geartrain.server.store.url import default_sqlite_path


def build(*argv: str):
    parser = argparse.ArgumentParser()
    parser.add_argument("-p", "--port", type=int, default=4730)
    add_store_arguments(parser)
    return store_from_args(parser.parse_args(list(argv)))


def test_default_is_sqlite_per_port(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    store = build()
    assert isinstance(store, SQLiteStore)
    assert Path(store.path) == tmp_path / "geartrain" / "queue-4730.sqlite" == default_sqlite_path(4730)
    assert Path(build("-p", "4800").path) == tmp_path / "geartrain" / "queue-4800.sqlite"
    assert store.table == "gearman_queue"


def test_gearmand_spellings():
    s = build("-q", "libsqlite3", "--libsqlite3-db", "/tmp/x.db", "--libsqlite3-table", "t")
    assert isinstance(s, SQLiteStore) and (s.path, s.table) == ("/tmp/x.db", "t")
    pg = build("-q", "Postgres", "--libpq-conninfo", "host=h port=5 user=u password='a b\\'c' dbname=d",
               "--libpq-table", "tq")
    assert isinstance(pg, PostgresStore) and pg.table == "tq"
    assert pg.connect_args == {"host": "h", "port": 5, "user": "u", "password": "a b'c", "database": "d"}
    my = build("-q", "MySQL", "--mysql-host", "h", "--mysql-port", "3307", "--mysql-user", "u",
               "--mysql-password", "p", "--mysql-db", "d", "--mysql-table", "t")
    assert isinstance(my, MySQLStore) and my.table == "t"
    assert my.connect_args == {"host": "h", "port": 3307, "user": "u", "password": "p", "db": "d"}
    rd = build("-q", "redis", "--redis-server", "h", "--redis-port", "6380", "--redis-password", "pw",
               "--redis-prefix", "pp")
    assert isinstance(rd, RedisStore) and rd.prefix == b"pp"
    assert rd.connect_args == {"host": "h", "port": 6380, "password": "pw"}
    # gearmand's defaults
    assert build("-q", "Postgres").table == "queue" and build("-q", "mysql").table == "gearman_queue"
    assert build("-q", "redis").prefix == b"_gear_"


def test_backend_options_alone_choose_the_backend():
    assert isinstance(build("--libsqlite3-db", "/tmp/y.db"), SQLiteStore)
    assert isinstance(build("--redis-server", "127.0.0.1"), RedisStore)
    with pytest.raises(SystemExit):
        build("--redis-server", "h", "--mysql-host", "h")


def test_unknown_queue_is_a_clear_error():
    with pytest.raises(SystemExit, match="unknown queue"):
        build("-q", "libmemcached")


def test_memory():
    assert isinstance(build("-q", "builtin"), MemoryStore) and isinstance(build("-q", "memory"), MemoryStore)
