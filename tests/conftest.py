"""Shared fixtures: free ports, real peers (the C gearmand and friends) and our own server.

Interop tests need real peers. Where one is missing they skip, except under
GEARTRAIN_REQUIRE_PEERS=1 (set by .ci/run), where a missing peer fails the test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIRE_PEERS = os.environ.get("GEARTRAIN_REQUIRE_PEERS") == "1"
GEARMAND = os.environ.get("GEARMAND", "/usr/sbin/gearmand")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need_peer(what: str, available: bool) -> None:
    """Skip (or, under GEARTRAIN_REQUIRE_PEERS=1, fail) when a real peer is missing."""
    if available:
        return
    if REQUIRE_PEERS:
        pytest.fail(f"required peer missing: {what}")
    pytest.skip(f"peer missing: {what}")


def need_binary(name: str) -> str:
    path = name if os.path.isabs(name) else shutil.which(name)
    need_peer(name, bool(path) and os.access(path, os.X_OK))
    return path  # type: ignore[return-value]


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 15.0,
              host: str = "127.0.0.1") -> None:
    """Wait until something accepts connections on HOST:PORT (or PROC exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on PORT (any address), from /proc/net/tcp{,6}."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f[9])
    return inodes


def wait_own_port(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Wait until PROC itself listens on PORT: a free port taken by another process meanwhile is an error."""
    wait_port(port, proc, timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; port {port} belongs to another process")
        try:
            fds = os.listdir(f"/proc/{proc.pid}/fd")
        except OSError:
            return  # no /proc: trust wait_port
        owned = set()
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{proc.pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                owned.add(target[8:-1])
        if owned & _listening_inodes(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} is served by another process, not by pid {proc.pid}")


@dataclass
class Server:
    """A running job server: which kind, where, and its process."""

    kind: str  # "geartrain" or "gearmand"
    host: str
    port: int
    proc: subprocess.Popen
    log: Path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_gearmand(tmp: Path, *args: str, port: int | None = None) -> Server:
    """Start the real C gearmand (one I/O thread, its fastest setting here) on a free port."""
    binary = need_binary(GEARMAND)
    port = port or free_port()
    log = tmp / f"gearmand-{port}.log"
    cmd = [binary, "-L", "127.0.0.1", "-p", str(port), "-t", "1", "--log-file", str(log),
           "--verbose", "INFO", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_own_port(port, proc)
    return Server("gearmand", "127.0.0.1", port, proc, log)


def start_geartrain(tmp: Path, *args: str, port: int | None = None, env: dict | None = None) -> Server:
    """Start our server as its own process (``python -m geartrain serve``) on a free port."""
    port = port or free_port()
    log = tmp / f"geartrain-{port}.log"
    cmd = [sys.executable, "-m", "geartrain", "serve", "-L", "127.0.0.1", "-p", str(port),
           "--log-file", str(log), *args]
    if not any(a == "--queue" or a.startswith("--queue=") or a == "-q" for a in args):
        cmd += ["--queue", "memory"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                            env={**os.environ, **(env or {})})
    try:
        wait_own_port(port, proc)
    except Exception:
        proc.kill()
        raise RuntimeError(f"geartrain did not start: {log.read_text() if log.exists() else ''}") from None
    return Server("geartrain", "127.0.0.1", port, proc, log)


@pytest.fixture
def gearmand(tmp_path: Path) -> Iterator[Server]:
    """The real C gearmand."""
    server = start_gearmand(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def geartrain(tmp_path: Path) -> Iterator[Server]:
    """Our server, in-memory queue."""
    server = start_geartrain(tmp_path)
    yield server
    server.stop()


@pytest.fixture(params=["geartrain", "gearmand"])
def any_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """Each test using it runs once against our server and once against the C gearmand."""
    server = start_geartrain(tmp_path) if request.param == "geartrain" else start_gearmand(tmp_path)
    yield server
    server.stop()
