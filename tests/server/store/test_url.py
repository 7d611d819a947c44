"""Queue URLs build the right store, pointed at the right place, and refuse what they cannot use."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from geartrain.protocol.codec import Parser, pack_req
from geartrain.protocol.packets import RES, T
from geartrain.server.store.base import MemoryStore, QueueConfigError
from geartrain.server.store.mysql import MySQLStore
from geartrain.server.store.postgres import PostgresStore, parse_conninfo
from geartrain.server.store.redis import RedisStore
from geartrain.server.store.sqlite import SQLiteStore
from geartrain.server.store.url import store_from_url
from tests.conftest import ROOT, free_port, wait_port


@pytest.mark.parametrize("url, path, table", [
    ("sqlite:///rel/q.db", "rel/q.db", "gearman_queue"),
    ("sqlite:////abs/q.db?table=t1", "/abs/q.db", "t1"),
    ("sqlite:/abs/q.db", "/abs/q.db", "gearman_queue"),
    ("sqlite:rel.db", "rel.db", "gearman_queue"),
])
def test_sqlite_urls(url, path, table):
    store = store_from_url(url)
    assert isinstance(store, SQLiteStore) and (store.path, store.table) == (path, table)


def test_sqlite_url_with_a_host_is_refused():
    with pytest.raises(ValueError):
        store_from_url("sqlite://host/x.db")


def test_network_urls():
    pg = store_from_url("postgresql://u:secret@db:5433/jobs?table=q&sslmode=disable")
    assert isinstance(pg, PostgresStore) and pg.table == "q"
    assert pg.connect_args == {"dsn": "postgresql://u:secret@db:5433/jobs?sslmode=disable"}
    assert "secret" not in pg._describe()
    my = store_from_url("mariadb://root:pw@10.0.0.1:3307/test?table=gq")
    assert isinstance(my, MySQLStore) and my.table == "gq"
    assert my.connect_args == {"host": "10.0.0.1", "port": 3307, "user": "root", "password": "pw", "db": "test"}
    rd = store_from_url("redis://:pw@cache:6380/2?prefix=pfx")
    assert isinstance(rd, RedisStore) and rd.prefix == b"pfx"
    assert rd.connect_args == {"host": "cache", "port": 6380, "db": 2, "password": "pw"}
    assert isinstance(store_from_url("memory"), MemoryStore) and isinstance(store_from_url("builtin"), MemoryStore)


def test_conninfo_accepts_a_url():
    assert parse_conninfo("postgresql://u@h/d") == {"dsn": "postgresql://u@h/d"}
    with pytest.raises(ValueError):
        parse_conninfo("host")


def test_postgres_table_names_fold_like_gearmands_unquoted_ones():
    from geartrain.server.store.postgres import quote_ident

    assert quote_ident("MyQueue") == '"myqueue"' and quote_ident("Jobs.Queue") == '"jobs"."queue"'
    assert quote_ident("odd-name") == '"odd-name"'
    store = store_from_url("postgresql://h/d?table=Sch.MyQ")
    assert (store.schema, store.table_name) == ("sch", "myq")


@pytest.mark.parametrize("url, name, accepted", [
    ("sqlite:///q.sqlite?tabel=x", "tabel", "table, synchronous"),
    ("redis://127.0.0.1:6379/0?prefx=x", "prefx", "prefix, db"),
    ("mysql://root@127.0.0.1:3306/test?foo=1", "foo", "table, unix_socket"),
    ("postgresql://postgres@127.0.0.1:5432/test?tabel=x", "tabel", "table, application_name, host"),
])
def test_an_unknown_parameter_is_refused_naming_it_and_the_accepted_ones(url, name, accepted):
    """A typo must not start a server on another table, nor (PostgreSQL, which would send it to the
    server as a setting) retry for ever."""
    with pytest.raises(QueueConfigError) as refused:
        store_from_url(url)
    text = str(refused.value)
    assert f"unknown parameter {name!r}" in text and accepted in text and "\n" not in text


def test_the_parameters_the_backends_take_are_accepted():
    assert store_from_url("sqlite:///q.sqlite?table=t&synchronous=full").synchronous == "FULL"
    assert store_from_url("postgresql://h/d?sslmode=require&application_name=gt&table=q").connect_args == {
        "dsn": "postgresql://h/d?sslmode=require&application_name=gt"}
    assert store_from_url("mysql://h/d?unix_socket=/run/m.sock").connect_args["unix_socket"] == "/run/m.sock"
    unix = store_from_url("unix:///run/r.sock?db=3&prefix=p")
    assert (unix.connect_args, unix.prefix) == ({"unix_socket_path": "/run/r.sock", "db": 3}, b"p")


#: a Python that cannot import the database drivers named after it (as if they were not installed)
BLOCKED = "import sys\nfor name in sys.argv[1].split(','):\n    sys.modules[name] = None\n"


def _without(drivers: str, code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKED + code, drivers, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


SERVE = "from geartrain.cli import main\nsys.exit(main(['serve', *sys.argv[2:]]))\n"


@pytest.mark.parametrize("args, message", [
    (["--queue", "postgresql://postgres@127.0.0.1/test"],
     "the postgresql queue needs asyncpg: pip install 'geartrain[postgres]'"),
    (["-q", "Postgres", "--libpq-conninfo", "host=127.0.0.1"],
     "the postgresql queue needs asyncpg: pip install 'geartrain[postgres]'"),
    (["--queue", "mariadb://root@127.0.0.1/test"], "the mysql queue needs asyncmy: pip install 'geartrain[mysql]'"),
    (["--queue", "redis://127.0.0.1:6379/0"], "the redis queue needs redis: pip install 'geartrain[redis]'"),
    (["-q", "redis"], "the redis queue needs redis: pip install 'geartrain[redis]'"),
])
def test_a_missing_driver_is_one_line_naming_the_extra(args, message):
    done = _without("asyncpg,asyncmy,redis", SERVE, *args, "--check-args")
    assert (done.returncode, done.stderr) == (1, f"geartrain serve: {message}\n")


def test_the_url_module_sqlite_and_memory_need_no_driver(tmp_path: Path):
    """``import geartrain.server.store.url`` and a server on a SQLite (or memory) queue import none
    of the database drivers: a Python without them serves background jobs."""
    code = ("import geartrain.server.store.url as url\n"
            "url.store_from_url('memory'); url.store_from_url('sqlite:///x.sqlite')\n"
            "assert not {'asyncpg', 'asyncmy', 'redis'} & {m.split('.')[0] for m in sys.modules}, sys.modules\n")
    done = _without("-", code)  # nothing blocked: none is imported
    assert done.returncode == 0, done.stderr
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", BLOCKED + SERVE, "asyncpg,asyncmy,redis", "-p", str(port),
                             "--queue", f"sqlite:///{tmp_path / 'q.sqlite'}", "--log-file", str(tmp_path / "log")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_port(port, proc)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(pack_req(T.SUBMIT_JOB_BG, b"f", b"u", b"data"))
            assert Parser(expect=RES).feed(sock.recv(1024))[0][0] == T.JOB_CREATED
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
