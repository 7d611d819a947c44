"""Helpers for the compat tests: run the documentation's example scripts against a server, and a
counting TCP proxy that sits between a worker and the server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import geartrain.compat.gearman as gearman
from geartrain.protocol.codec import Parser
from geartrain.protocol.packets import REQ, T
from tests.conftest import ROOT, Server, free_port

EXAMPLES = Path(__file__).resolve().parent / "examples"


def prepare_example(name: str, server: Server, tmp: Path) -> Path:
    """Copy an example with the docs' addresses replaced: localhost:4730 -> SERVER, otherhost:4730 -> a dead port."""
    text = (EXAMPLES / name).read_text()
    text = text.replace("localhost:4730", server.address)
    text = text.replace("otherhost:4730", f"127.0.0.1:{free_port()}")
    path = tmp / name
    path.write_text(text)
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def run_example(name: str, server: Server, tmp: Path, timeout: float = 60) -> str:
    """Run a client example to its end; return its stdout (fails the test on a non-zero exit)."""
    path = prepare_example(name, server, tmp)
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=timeout, env=_env(),
                          cwd=tmp)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def wait_for_workers(server: Server, task: str, count: int = 1, timeout: float = 15) -> None:
    """Wait until the server lists COUNT workers for TASK."""
    admin = gearman.GearmanAdminClient([server.address])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            status = {row["task"]: row for row in admin.get_status()}
            if task in status and status[task]["workers"] >= count:
                return
            time.sleep(0.05)
    finally:
        admin.shutdown()
    raise TimeoutError(f"no worker registered {task!r} on {server.address}")


@contextmanager
def running_example(name: str, server: Server, tmp: Path, task: str) -> Iterator[subprocess.Popen]:
    """Start a worker example (it loops forever), wait until it registered TASK, stop it afterwards."""
    path = prepare_example(name, server, tmp)
    log = open(tmp / f"{name}.out", "w+")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, str(path)], stdout=log, stderr=subprocess.STDOUT, env=_env(), cwd=tmp)
    try:
        wait_for_workers(server, task)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.seek(0)
        proc.output = log.read()  # type: ignore[attr-defined]
        log.close()


class CountingProxy:
    """Forward one TCP port to a server and count the packets clients send through it (by type).

    ``drop()`` closes every proxied connection (a server crash, as far as the client can tell).
    """

    def __init__(self, server: Server) -> None:
        self.target = (server.host, server.port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.sent: Counter[int] = Counter()
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, Parser(expect=REQ)), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, parser: Parser | None) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if parser is not None:
                    events = parser.feed(data)
                    with self.lock:
                        for ptype, _args in events:
                            self.sent[ptype] += 1
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def count(self, ptype: T) -> int:
        with self.lock:
            return self.sent[ptype]

    def drop(self) -> None:
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.sockets = []

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        self.drop()


@contextmanager
def worker_thread(servers: list[Server], tasks: dict, worker_class: type = gearman.GearmanWorker,
                  poll_timeout: float | None = 0.2, addresses: list[str] | None = None) -> Iterator:
    """Run a GearmanWorker with TASKS in a thread until the block ends (after_poll then says stop)."""
    stop = threading.Event()

    class StoppableWorker(worker_class):  # type: ignore[misc, valid-type]
        def after_poll(self, any_activity):
            return super().after_poll(any_activity) and not stop.is_set()

    worker = StoppableWorker(addresses or [s.address for s in servers])
    for task, callback in tasks.items():
        worker.register_task(task, callback)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.work(poll_timeout=poll_timeout)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    first = next(iter(tasks))
    for server in servers:
        wait_for_workers(server, first if isinstance(first, str) else first.decode())
    worker.stop_event = stop
    try:
        yield worker
    finally:
        stop.set()
        thread.join(15)
    assert not thread.is_alive(), "worker did not leave its work loop"
    assert not errors, errors
