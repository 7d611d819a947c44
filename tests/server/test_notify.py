"""sd_notify (server/notify.py) against a real unix datagram socket the test binds as $NOTIFY_SOCKET, with a
real `geartrain serve`: STATUS= while the queue's database is awaited and no READY=1 then; READY=1 only once the
queue is replayed and the ports listen (a job stored before the start is queued when READY=1 arrives);
STOPPING=1 on SIGUSR1 and on `shutdown graceful`; WATCHDOG=1 when $WATCHDOG_USEC is set for this process, and
none when it is not.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from geartrain.server.notify import Notifier
from geartrain.server.store.base import StoredJob
from geartrain.server.store.url import store_from_url
from tests.conftest import ROOT, free_port
from tests.interop.wire import Wire, status_table
from tests.server.store.backends import PrivateRedis


class Listener:
    """The service manager's end: a unix datagram socket, and every message it received."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="gt-notify-", dir="/tmp")  # a socket path must be short
        self.path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[dict[str, str]] = []

    def receive(self, timeout: float) -> dict[str, str] | None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return None
        message = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
        self.messages.append(message)
        return message

    def wait(self, key: str, timeout: float = 20.0) -> dict[str, str]:
        """Messages until one has KEY (it is returned); the ones before stay in ``messages``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.receive(max(deadline - time.monotonic(), 0.01))
            if message is not None and key in message:
                return message
        raise AssertionError(f"no {key} within {timeout}s; got {self.messages}")

    def count(self, key: str) -> int:
        return sum(key in m for m in self.messages)

    def close(self) -> None:
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


@pytest.fixture
def listener() -> Iterator[Listener]:
    it = Listener()
    yield it
    it.close()


def test_environ_parsing():
    assert not Notifier.from_environ({}).enabled
    n = Notifier.from_environ({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "3000000"}, pid=42)
    assert n.enabled and n.watchdog_usec == 3_000_000
    assert Notifier.from_environ({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "42"},
                                 pid=42).watchdog_usec == 3_000_000
    # the watchdog is another process's (WATCHDOG_PID names it): not ours to ping
    assert Notifier.from_environ({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "7"},
                                 pid=42).watchdog_usec == 0
    assert not Notifier().send("READY=1")  # nobody to tell


def test_abstract_socket_names(listener: Listener):
    name = f"gt-notify-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as abstract:
        abstract.bind("\0" + name)
        abstract.settimeout(5)
        notifier = Notifier("@" + name)
        assert notifier.status("a\nstatus  over\tlines")
        assert abstract.recv(100) == b"STATUS=a status over lines\n"  # one line
        notifier.close()


def _serve(tmp: Path, listener: Listener, queue: str, watchdog: bool) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "NOTIFY_SOCKET": listener.path}
    env.pop("WATCHDOG_USEC", None)
    env.pop("WATCHDOG_PID", None)
    if watchdog:
        env["WATCHDOG_USEC"] = "200000"  # a ping every 0.1 s
    proc = subprocess.Popen([sys.executable, "-m", "geartrain", "serve", "-L", "127.0.0.1", "-p", str(port),
                             "--queue", queue, "--log-file", str(tmp / "serve.log"), "--verbose", "NOTICE"],
                            cwd=ROOT, env=env)
    return proc, port


@pytest.mark.parametrize("stop", ["SIGUSR1", "shutdown graceful"])
def test_ready_after_the_replay_stopping_on_a_graceful_stop_and_the_watchdog(tmp_path: Path, listener: Listener,
                                                                             stop: str):
    watchdog = stop == "SIGUSR1"  # one run with WatchdogSec=, one without
    redis = PrivateRedis(tmp_path, persist=True)
    redis.start()

    async def store_one() -> None:
        store = store_from_url(redis.url)
        await store.open()
        await store.add([StoredJob(b"stored", b"before-start", b"x", 1)])
        await store.close()

    asyncio.run(store_one())
    redis.stop()  # the queue's database is down when the server starts
    proc, port = _serve(tmp_path, listener, redis.url, watchdog)
    try:
        waiting = listener.wait("STATUS")
        assert waiting["STATUS"].startswith("waiting for the redis queue (attempt 1): "), waiting
        assert listener.count("READY") == 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()

        redis.start()  # the job stored before the start is still there
        ready = listener.wait("READY")
        assert ready["READY"] == "1" and ready["STATUS"].startswith(f"serving on 127.0.0.1:{port}; queue redis ")
        with Wire("127.0.0.1", port) as wire:  # at READY=1 the port listens and the job is queued
            assert status_table(wire) == {b"stored": (1, 0, 0)}
            if watchdog:
                while listener.count("WATCHDOG") < 3:
                    listener.wait("WATCHDOG", timeout=10)
            if stop == "SIGUSR1":
                proc.send_signal(signal.SIGUSR1)
            else:
                assert wire.admin_line(stop) == b"OK\r\n"
            stopping = listener.wait("STOPPING")
        assert stopping == {"STOPPING": "1", "STATUS": "stopping gracefully: running jobs finish"}
        assert proc.wait(15) == 0
        while listener.receive(0.05) is not None:  # the rest
            pass
        assert all(m.get("WATCHDOG", "1") == "1" for m in listener.messages)
        if not watchdog:
            assert listener.count("WATCHDOG") == 0
        assert listener.count("READY") == 1 and listener.count("STOPPING") == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        redis.stop()
