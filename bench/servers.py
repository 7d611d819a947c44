"""The two job servers under test, started the same way: geartrain (python -m geartrain serve) and gearmand -t 1.

A Server knows its port and pid (for /proc CPU accounting and py-spy), and stops cleanly. Durable
queues are given as a Backend: for each store, the geartrain --queue URL and the gearmand -q options
that point at the same database, plus a cleanup that drops what the run left there.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from procs import ROOT, BenchError, NotAvailable, cpu_seconds, free_port, on_cpus, wait_port

GEARMAND = os.environ.get("GEARMAND", "/usr/sbin/gearmand")
SIDES = ("geartrain", "gearmand")


@dataclass
class Server:
    kind: str
    port: int
    proc: subprocess.Popen
    log: Path
    errlog: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def gearmand_available() -> bool:
    return os.access(GEARMAND, os.X_OK)


def geartrain_available() -> bool:
    return (ROOT / "geartrain" / "cli" / "serve.py").exists()


def _tail(path: Path, n: int = 1200) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def start(kind: str, tmp: Path, queue: list[str] | None = None, cpus: set[int] | None = None) -> Server:
    """Start one server on a free loopback port. QUEUE: the durable-queue options for this kind; CPUS: the
    CPUs it (every thread of it) may run on, None for any."""
    port = free_port()
    log = tmp / f"{kind}-{port}.log"
    errlog = tmp / f"{kind}-{port}.stderr"
    if kind == "gearmand":
        if not gearmand_available():
            raise NotAvailable(f"{GEARMAND} not installed")
        cmd = [GEARMAND, "-L", "127.0.0.1", "-p", str(port), "-t", "1", "--log-file", str(log),
               "-P", str(tmp / f"gearmand-{port}.pid"), *(queue or [])]
    elif kind == "geartrain":
        if not geartrain_available():
            raise NotAvailable("geartrain's server (geartrain/cli/serve.py) is not in the repo yet")
        cmd = [sys.executable, "-m", "geartrain", "serve", "-L", "127.0.0.1", "-p", str(port),
               "--log-file", str(log), *(queue or ["--queue", "memory"])]
    else:
        raise ValueError(kind)
    with open(errlog, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT, preexec_fn=on_cpus(cpus))
    try:
        wait_port(port, proc)
    except BenchError:
        proc.kill()
        proc.wait()
        why = _tail(errlog) + _tail(log)
        lowered = why.lower()
        if queue and ("unknown queue" in lowered or "not supported" in lowered or "unrecognized" in lowered
                      or "unknown option" in lowered or "invalid" in lowered and "queue" in lowered):
            raise NotAvailable(f"{kind} cannot use this queue: {why.strip().splitlines()[-1][:200]}") from None
        raise BenchError(f"{kind} did not start ({' '.join(cmd)}):\n{why}") from None
    return Server(kind, port, proc, log, errlog)


# -- durable queue backends ---------------------------------------------------------------------------------


@dataclass
class Backend:
    """One store, as both servers name it; cleanup() removes this run's table/keys/file."""

    name: str
    geartrain: list[str]
    gearmand: list[str]
    cleanup: Callable[[], None] = field(default=lambda: None)

    def options(self, kind: str) -> list[str]:
        return self.geartrain if kind == "geartrain" else self.gearmand


def _quiet(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def _pg_ok() -> bool:
    return shutil.which("psql") is not None and _quiet(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-tAc", "select 1"]).returncode == 0


def _mysql_ok() -> bool:
    return shutil.which("mysql") is not None and _quiet(
        ["mysql", "-h", "127.0.0.1", "-u", "root", "test", "-e", "select 1"]).returncode == 0


def _redis_ok() -> bool:
    return shutil.which("redis-cli") is not None and _quiet(["redis-cli", "-h", "127.0.0.1", "ping"]).stdout.strip() \
        == "PONG"


def _redis_delete(pattern: str) -> None:
    keys = _quiet(["redis-cli", "-h", "127.0.0.1", "--scan", "--pattern", pattern]).stdout.split()
    for i in range(0, len(keys), 500):
        _quiet(["redis-cli", "-h", "127.0.0.1", "del", *keys[i:i + 500]])


def backend(name: str, kind: str, tmp: Path) -> Backend:
    """A fresh place in store NAME for one run of server KIND (NotAvailable if the service is not running)."""
    tag = f"{kind[:2]}{uuid.uuid4().hex[:10]}"
    if name == "memory":
        return Backend(name, ["--queue", "memory"], [])
    if name == "sqlite":
        path = Path(tempfile.mkdtemp(dir=tmp)) / f"{tag}.sqlite"
        return Backend(name, ["--queue", f"sqlite:///{path}"],
                       ["-q", "libsqlite3", "--libsqlite3-db", str(path)],
                       lambda: shutil.rmtree(path.parent, ignore_errors=True))
    if name == "postgres":
        if not _pg_ok():
            raise NotAvailable("PostgreSQL is not running on 127.0.0.1:5432 (scripts/start-services)")
        table = f"gtbench_{tag}"
        return Backend(name, ["--queue", f"postgresql://postgres@127.0.0.1:5432/test?table={table}"],
                       ["-q", "Postgres", "--libpq-conninfo", "host=127.0.0.1 port=5432 user=postgres dbname=test",
                        "--libpq-table", table],
                       lambda: _quiet(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc",
                                       f"DROP TABLE IF EXISTS {table}"]))
    if name == "mysql":
        if not _mysql_ok():
            raise NotAvailable("MariaDB/MySQL is not running on 127.0.0.1:3306 (scripts/start-services)")
        table = f"gtbench_{tag}"
        return Backend(name, ["--queue", f"mysql://root@127.0.0.1:3306/test?table={table}"],
                       ["-q", "MySQL", "--mysql-host", "127.0.0.1", "--mysql-port", "3306", "--mysql-user", "root",
                        "--mysql-db", "test", "--mysql-table", table],
                       lambda: _quiet(["mysql", "-h", "127.0.0.1", "-u", "root", "test", "-e",
                                       f"DROP TABLE IF EXISTS {table}"]))
    if name == "redis":
        if not _redis_ok():
            raise NotAvailable("Redis is not running on 127.0.0.1:6379 (scripts/start-services)")
        prefix = f"gtbench_{tag}"
        return Backend(name, ["--queue", f"redis://127.0.0.1:6379/0?prefix={prefix}"],
                       ["-q", "redis", "--redis-server", "127.0.0.1", "--redis-port", "6379", "--redis-prefix", prefix],
                       lambda: _redis_delete(f"{prefix}*"))
    raise ValueError(name)


def gearmand_queues() -> set[str]:
    """The queue plugins this gearmand was built with (from `gearmand --help`)."""
    if not gearmand_available():
        return set()
    text = subprocess.run([GEARMAND, "--help"], capture_output=True, text=True, timeout=30).stdout
    names = {"libsqlite3:": "sqlite", "Postgres:": "postgres", "MySQL:": "mysql", "redis:": "redis"}
    return {ours for theirs, ours in names.items() if f"\n{theirs}" in text} | {"memory"}


def wait_workers(server: Server, function: str, count: int, timeout: float = 10.0) -> bool:
    """Poll the admin `workers` command until COUNT connections registered FUNCTION (False on timeout)."""
    import socket

    deadline = time.monotonic() + timeout
    fn = function.encode()
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=2) as s:
                s.sendall(b"workers\n")
                buf = b""
                while not buf.endswith(b"\n.\n") and buf != b".\n":
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
            n = sum(1 for line in buf.split(b"\n") if b" : " in line and fn in line.split(b" : ", 1)[1].split())
            if n >= count:
                return True
        except OSError:
            pass
        time.sleep(0.03)
    return False
