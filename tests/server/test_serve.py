"""End to end: `geartrain serve` as its own process, spoken to with raw sockets, packet type by packet type."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from geartrain.protocol.codec import Parser, pack_req
from geartrain.protocol.packets import RES, T
from tests.conftest import ROOT, Server, free_port, need_binary, start_geartrain, wait_port

Packet = tuple[str, tuple[bytes, ...]]


class Conn:
    """A raw connection: send packets or admin lines, read whole packets with a deadline."""

    def __init__(self, server: Server) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=5)
        self.parser = Parser(RES, text=False)
        self.pending: list[Packet] = []

    def send(self, ptype: int, *args: bytes) -> Conn:
        self.sock.sendall(pack_req(ptype, *args))
        return self

    def raw(self, data: bytes) -> Conn:
        self.sock.sendall(data)
        return self

    def read(self, n: int = 1, timeout: float = 5.0) -> list[Packet]:
        deadline = time.monotonic() + timeout
        while len(self.pending) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"wanted {n} packets, got {self.pending}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise AssertionError(f"connection closed; got {self.pending}")
            self.pending += [(T(t).name, a) for t, a in self.parser.feed(data)]
        got, self.pending = self.pending[:n], self.pending[n:]
        return got

    def one(self, timeout: float = 5.0) -> Packet:
        return self.read(1, timeout)[0]

    def nothing(self, wait: float = 0.3) -> None:
        """Assert that no packet arrives within WAIT seconds."""
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            data = None
        if data is not None:
            self.pending += [(T(t).name, a) for t, a in self.parser.feed(data)]
        assert not self.pending, self.pending

    def text(self, line: bytes) -> bytes:
        """Send an admin line; return the reply (a listing up to ``.\\n`` or one line)."""
        self.sock.sendall(line + b"\r\n")
        buf = b""
        self.sock.settimeout(5)
        while True:
            buf += self.sock.recv(65536)
            if buf.endswith(b"\r\n") or buf == b".\n" or buf.endswith(b"\n.\n") or (
                    buf.startswith(b"OK ") and buf.endswith(b"\n")):
                return buf

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_geartrain(tmp_path_factory.mktemp("serve"), "--job-handle-prefix", "H:e2e")
    yield s
    s.stop()


@pytest.fixture
def conns(server: Server) -> Iterator:
    made: list[Conn] = []

    def make() -> Conn:
        c = Conn(server)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def _fn(request: pytest.FixtureRequest) -> bytes:
    """A function name of this test's own, so tests sharing the server do not see each other's jobs."""
    return request.node.name.encode()


def test_foreground_job_with_every_work_packet(conns, request):
    f = _fn(request)
    client, worker = conns(), conns()
    worker.send(T.CAN_DO, f).send(T.PRE_SLEEP)
    client.send(T.SUBMIT_JOB, f, b"", b"payload")
    name, (handle,) = client.one()
    assert name == "JOB_CREATED" and handle.startswith(b"H:e2e:")
    assert worker.one() == ("NOOP", ())
    worker.send(T.GRAB_JOB_ALL)
    assert worker.one() == ("JOB_ASSIGN_UNIQ", (handle, f, b"", b"payload"))
    for ptype, args in ((T.WORK_DATA, (b"d",)), (T.WORK_WARNING, (b"w",)), (T.WORK_STATUS, (b"1", b"4"))):
        worker.send(ptype, handle, *args)
    assert client.read(3) == [("WORK_DATA", (handle, b"d")), ("WORK_WARNING", (handle, b"w")),
                              ("WORK_STATUS", (handle, b"1", b"4"))]
    client.send(T.GET_STATUS, handle)
    assert client.one() == ("STATUS_RES", (handle, b"1", b"1", b"1", b"4"))
    worker.send(T.WORK_COMPLETE, handle, b"result")
    assert client.one() == ("WORK_COMPLETE", (handle, b"result"))
    client.send(T.GET_STATUS, handle)
    assert client.one() == ("STATUS_RES", (handle, b"0", b"0", b"0", b"0"))


@pytest.mark.parametrize("ptype", [T.SUBMIT_JOB_BG, T.SUBMIT_JOB_HIGH_BG, T.SUBMIT_JOB_LOW_BG])
def test_background_submits(conns, request, ptype):
    f = _fn(request)
    client, worker = conns(), conns()
    client.send(ptype, f, b"", b"bg")
    (_, (handle,)), = client.read(1)
    worker.send(T.CAN_DO, f).send(T.GRAB_JOB)
    assert worker.one() == ("JOB_ASSIGN", (handle, f, b"bg"))
    worker.send(T.WORK_COMPLETE, handle, b"")
    client.nothing()


def test_priorities_high_normal_low(conns, request):
    f = _fn(request)
    client, worker = conns(), conns()
    for ptype, data in ((T.SUBMIT_JOB_LOW, b"low"), (T.SUBMIT_JOB, b"normal"), (T.SUBMIT_JOB_HIGH, b"high")):
        client.send(ptype, f, b"", data)
    client.read(3)
    worker.send(T.CAN_DO, f)
    got = []
    for _ in range(3):
        worker.send(T.GRAB_JOB)
        got.append(worker.one()[1][2])
    assert got == [b"high", b"normal", b"low"]


def test_coalescing_and_exceptions_option(conns, request):
    f = _fn(request)
    c1, c2, worker = conns(), conns(), conns()
    c2.send(T.OPTION_REQ, b"exceptions")
    assert c2.one() == ("OPTION_RES", (b"exceptions",))
    c1.send(T.SUBMIT_JOB, f, b"same", b"x")
    c2.send(T.SUBMIT_JOB, f, b"same", b"x")
    h1, h2 = c1.one()[1][0], c2.one()[1][0]
    assert h1 == h2
    c1.send(T.GET_STATUS_UNIQUE, b"same")
    assert c1.one() == ("STATUS_RES_UNIQUE", (b"same", b"1", b"0", b"0", b"0", b"2"))
    worker.send(T.CAN_DO, f).send(T.GRAB_JOB_UNIQ)
    assert worker.one() == ("JOB_ASSIGN_UNIQ", (h1, f, b"same", b"x"))
    worker.send(T.WORK_EXCEPTION, h1, b"oops")
    assert c1.one() == ("WORK_FAIL", (h1,))
    assert c2.one() == ("WORK_EXCEPTION", (h1, b"oops"))


def test_work_fail_and_unknown_handle(conns, request):
    f = _fn(request)
    client, worker = conns(), conns()
    client.send(T.SUBMIT_JOB, f, b"", b"")
    handle = client.one()[1][0]
    worker.send(T.CAN_DO, f).send(T.GRAB_JOB)
    worker.one()
    worker.send(T.WORK_FAIL, handle)
    assert client.one() == ("WORK_FAIL", (handle,))
    worker.send(T.WORK_COMPLETE, handle, b"again")
    assert worker.one() == ("ERROR", (b"JOB_NOT_FOUND", b"Job given in work result not found"))


def test_reduce_epoch_and_sched(conns, request):
    f = _fn(request)
    client, worker = conns(), conns()
    client.send(T.SUBMIT_REDUCE_JOB_BACKGROUND, f, b"r", b"reducer", b"", b"map")
    h = client.one()[1][0]
    worker.send(T.CAN_DO, f).send(T.GRAB_JOB_ALL)
    assert worker.one() == ("JOB_ASSIGN_ALL", (h, f, b"r", b"reducer", b"map"))
    worker.send(T.WORK_COMPLETE, h, b"")
    # an epoch job one second ahead runs by itself: the sleeping worker is woken at its time
    when = str(int(time.time()) + 2).encode()
    client.send(T.SUBMIT_JOB_EPOCH, f, b"", when, b"later")
    h = client.one()[1][0]
    worker.send(T.PRE_SLEEP)
    worker.nothing(0.5)
    assert worker.one(timeout=5) == ("NOOP", ())
    worker.send(T.GRAB_JOB)
    assert worker.one() == ("JOB_ASSIGN", (h, f, b"later"))
    worker.send(T.WORK_COMPLETE, h, b"")
    # SUBMIT_JOB_SCHED is accepted (gearmand rejects it) and can be cancelled by its handle
    client.send(T.SUBMIT_JOB_SCHED, f, b"", b"", b"", b"", b"", b"", b"cron")
    name, (sched,) = client.one()
    assert name == "JOB_CREATED"
    admin = conns()
    assert admin.text(b"cancel job " + sched) == b"OK\r\n"


def test_echo_client_id_errors_and_mixed_text(conns, request):
    c = conns()
    c.send(T.ECHO_REQ, b"\0binary\0")
    assert c.one() == ("ECHO_RES", (b"\0binary\0",))
    c.send(T.SET_CLIENT_ID, b"e2e-id")
    c.send(T.OPTION_REQ, b"bogus")
    assert c.one() == ("ERROR", (b"UNKNOWN_OPTION", b"Server does not recognize given option"))
    c.send(T.SUBMIT_JOB, b"f", b"u" * 65, b"")
    assert c.one() == ("ERROR", (b"ARGUMENT_TOO_LARGE", b"Unique value too large"))
    c.send(T.ALL_YOURS)
    assert c.one() == ("ERROR", (b"INVALID_COMMAND", b"Command not expected"))
    c.raw(b"\0RES" + struct.pack(">II", T.NOOP, 0))
    assert c.one() == ("ERROR", (b"INVALID_MAGIC", b"Request magic expected"))
    # text and binary on one connection
    workers = c.text(b"workers")
    assert b" e2e-id :" in workers and workers.endswith(b".\n")
    c.send(T.ECHO_REQ, b"still binary")
    assert c.one() == ("ECHO_RES", (b"still binary",))


def test_admin_commands(conns, request):
    f = _fn(request)
    a = conns()
    assert a.text(b"create function " + f) == b"OK\r\n"
    assert f + b"\t0\t0\t0\n" in a.text(b"status")
    assert f + b"\t0\t0\t0\t0\n" in a.text(b"prioritystatus")
    assert a.text(b"maxqueue " + f + b" 1") == b"OK\r\n"
    c = conns()
    c.send(T.SUBMIT_JOB_BG, f, b"", b"1").send(T.SUBMIT_JOB_BG, f, b"", b"2")
    h = c.one()[1][0]
    assert c.one() == ("ERROR", (b"QUEUE_ERROR", b"Job queue is full"))
    assert h + b"\t0\t0\t1\n" in a.text(b"show jobs")
    assert a.text(b"cancel job " + h) == b"OK\r\n"
    assert a.text(b"drop function " + f) == b"OK\r\n"
    assert a.text(b"getpid").startswith(b"OK ")
    assert a.text(b"version").startswith(b"OK ")
    assert a.text(b"verbose") == b"OK NOTICE\n"
    assert a.text(b"nonsense") == b"ERR UNKNOWN_COMMAND Unknown+server+commandnonsense\r\n"


def test_worker_dies_mid_job_and_another_gets_it(conns, request):
    f = _fn(request)
    client, w1, w2 = conns(), conns(), conns()
    client.send(T.SUBMIT_JOB, f, b"", b"first").send(T.SUBMIT_JOB, f, b"", b"second")
    h1, _ = client.one()[1][0], client.one()[1][0]
    w1.send(T.CAN_DO, f).send(T.GRAB_JOB)
    assert w1.one()[1][0] == h1
    admin = conns()
    assert f + b"\t2\t1\t1\n" in admin.text(b"status")
    w1.close()
    deadline = time.monotonic() + 5
    while f + b"\t2\t0\t0\n" not in admin.text(b"status"):  # the server noticed: h1 is queued again
        assert time.monotonic() < deadline
        time.sleep(0.02)
    w2.send(T.CAN_DO, f).send(T.GRAB_JOB)
    assert w2.one()[1][0] == h1  # back at the head of the queue, before "second"
    w2.send(T.WORK_COMPLETE, h1, b"ok")
    assert client.one() == ("WORK_COMPLETE", (h1, b"ok"))


def test_fatal_packet_closes_only_that_connection(conns, request):
    c = conns()
    c.raw(b"\0XYZ" + struct.pack(">II", 1, 0))
    assert c.one() == ("ERROR", (b"INVALID_MAGIC", b"Bad packet magic"))
    c.sock.settimeout(5)
    assert c.sock.recv(10) == b""
    other = conns()
    other.send(T.ECHO_REQ, b"fine")
    assert other.one() == ("ECHO_RES", (b"fine",))


# ---------------------------------------------------------------------- servers with options


def test_job_retries_and_timeout_in_seconds(tmp_path: Path):
    s = start_geartrain(tmp_path, "-j", "2")
    try:
        client, slow, fast = Conn(s), Conn(s), Conn(s)
        client.send(T.SUBMIT_JOB, b"t", b"", b"x")
        h = client.one()[1][0]
        slow.send(T.CAN_DO_TIMEOUT, b"t", b"1").send(T.GRAB_JOB)
        assert slow.one()[0] == "JOB_ASSIGN"
        time.sleep(1.5)  # past the 1 s timeout: the job goes back to the queue (a retry under -j 2)
        fast.send(T.CAN_DO, b"t").send(T.GRAB_JOB)
        assert fast.one()[1][0] == h
        slow.send(T.WORK_COMPLETE, h, b"late")  # ignored, no ERROR, connection kept
        slow.send(T.ECHO_REQ, b"alive")
        assert slow.one() == ("ECHO_RES", (b"alive",))
        fast.close()  # second try lost: with -j 2 the job fails now
        assert client.one() == ("WORK_FAIL", (h,))
        assert "max retry" in s.log.read_text()
    finally:
        s.stop()


def test_max_connections_and_max_packet_size(tmp_path: Path):
    s = start_geartrain(tmp_path, "--max-connections", "2", "--max-packet-size", "1K")
    try:
        a, b = Conn(s), Conn(s)
        a.send(T.ECHO_REQ, b"x")
        assert a.one()[0] == "ECHO_RES"
        extra = socket.create_connection((s.host, s.port), timeout=5)
        try:
            assert extra.recv(10) == b""
        except ConnectionResetError:
            pass
        extra.close()
        b.send(T.ECHO_REQ, b"y" * 2000)
        assert b.one() == ("ERROR", (b"ARGUMENT_TOO_LARGE", b"Packet larger than the server accepts"))
        time.sleep(0.2)
        assert "max-connections" in s.log.read_text()
    finally:
        s.stop()


def test_port_from_environment_and_pid_file(tmp_path: Path):
    import subprocess
    import sys

    port = free_port()
    pid_file = tmp_path / "g.pid"
    proc = subprocess.Popen([sys.executable, "-m", "geartrain", "serve", "-L", "127.0.0.1", "--queue", "memory",
                             "--log-file", str(tmp_path / "log"), "-P", str(pid_file)],
                            env={**os.environ, "GEARMAND_PORT": str(port)}, cwd=Path(__file__).parents[2])
    try:
        wait_port(port, proc)
        assert int(pid_file.read_text()) == proc.pid
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert not pid_file.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigusr1_lets_running_jobs_finish(tmp_path: Path):
    s = start_geartrain(tmp_path)
    try:
        client, worker = Conn(s), Conn(s)
        client.send(T.SUBMIT_JOB, b"g", b"", b"x")
        h = client.one()[1][0]
        worker.send(T.CAN_DO, b"g").send(T.GRAB_JOB)
        worker.one()
        s.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.3)
        assert s.proc.poll() is None  # still running: a job is in progress
        with pytest.raises(OSError):
            socket.create_connection((s.host, s.port), timeout=1).close()
        worker.send(T.WORK_COMPLETE, h, b"done")
        assert client.one() == ("WORK_COMPLETE", (h, b"done"))
        assert s.proc.wait(10) == 0
    finally:
        s.stop()


def test_sighup_reopens_log(tmp_path: Path):
    s = start_geartrain(tmp_path)
    try:
        moved = tmp_path / "rotated.log"
        s.log.rename(moved)
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while not s.log.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert s.log.exists() and "reopened" in s.log.read_text()
    finally:
        s.stop()


def test_client_that_never_reads_is_closed_not_buffered_forever(tmp_path: Path):
    s = start_geartrain(tmp_path, "--max-output-buffer", "1M")
    try:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect((s.host, s.port))
        client.sendall(pack_req(T.SUBMIT_JOB, b"flood", b"", b""))
        time.sleep(0.2)
        worker = Conn(s)
        worker.send(T.CAN_DO, b"flood").send(T.GRAB_JOB)
        name, args = worker.one()
        assert name == "JOB_ASSIGN"
        chunk = pack_req(T.WORK_DATA, args[0], b"z" * 65536)
        for _ in range(64):  # 4 MiB of WORK_DATA for a client that reads nothing
            worker.raw(chunk)
        worker.send(T.ECHO_REQ, b"worker fine")
        assert worker.one(timeout=10) == ("ECHO_RES", (b"worker fine",))
        deadline = time.monotonic() + 10
        while "does not read" not in s.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "does not read" in s.log.read_text()
        worker.send(T.WORK_COMPLETE, args[0], b"")
        worker.send(T.ECHO_REQ, b"still fine")
        assert worker.one() == ("ECHO_RES", (b"still fine",))
        client.close()
    finally:
        s.stop()


def test_daemon_returns_once_serving_and_fails_when_it_cannot(tmp_path: Path):
    import subprocess
    import sys

    port = free_port()
    pid_file = tmp_path / "d.pid"
    cmd = [sys.executable, "-m", "geartrain", "serve", "-L", "127.0.0.1", "-p", str(port), "--queue", "memory",
           "--log-file", str(tmp_path / "d.log"), "-d"]
    root = Path(__file__).parents[2]
    first = subprocess.run([*cmd, "-P", str(pid_file)], cwd=root, timeout=30)
    assert first.returncode == 0
    pid = int(pid_file.read_text())  # written before the command returned
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        second = subprocess.run(cmd, cwd=root, timeout=30)  # same port: the daemon cannot start
        assert second.returncode == 1
    finally:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_file.exists()


# ---------------------------------------------------------------------- start-up: ports, backlog, queue, syslog


def _backlog(port: int) -> int:
    """The listening socket's backlog, as `ss -ltn` shows it (Send-Q of a LISTEN socket)."""
    ss = need_binary("ss")
    out = subprocess.run([ss, "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    (line,) = out.splitlines()
    return int(line.split()[2])


def test_listen_backlog_is_the_systems_maximum_unless_b_sets_it(tmp_path: Path):
    system = int(Path("/proc/sys/net/core/somaxconn").read_text())
    s = start_geartrain(tmp_path)
    try:
        assert _backlog(s.port) == system  # gearmand's 32 makes a reconnect storm wait on SYN retransmits
    finally:
        s.stop()
    s = start_geartrain(tmp_path, "-b", "64")
    try:
        assert _backlog(s.port) == 64
    finally:
        s.stop()


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "geartrain", "serve", "-L", "127.0.0.1", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("taken", ["http", "gearman"])
def test_a_taken_port_is_named_once_and_the_queue_is_not_created(tmp_path: Path, taken: str):
    gearman_port, http_port = free_port(), free_port()
    queue = tmp_path / "q.sqlite"
    with socket.create_server(("127.0.0.1", http_port if taken == "http" else gearman_port)):
        out = _serve(tmp_path, "-p", str(gearman_port), "--http-port", str(http_port), "--queue",
                     f"sqlite:///{queue}")
        logged = tmp_path / "serve.log"
        to_file = _serve(tmp_path, "-p", str(gearman_port), "--http-port", str(http_port), "--queue",
                         f"sqlite:///{queue}", "--log-file", str(logged))
    failed, other = (http_port, gearman_port) if taken == "http" else (gearman_port, http_port)
    role = "HTTP" if taken == "http" else "Gearman"
    assert out.returncode == 1 and to_file.returncode == 1
    # the log goes to stderr: the reason is there once, naming the address that failed and no other
    assert out.stderr.count(f"127.0.0.1:{failed} ({role}): Address already in use") == 1, out.stderr
    assert str(other) not in out.stderr
    # the log goes to a file: the reason is in it, and once on stderr
    assert to_file.stderr.count(f"127.0.0.1:{failed} ({role})") == 1, to_file.stderr
    assert logged.read_text().count(f"127.0.0.1:{failed} ({role})") == 1
    assert not queue.exists()  # the ports are bound before the queue is opened


def test_start_up_line_names_the_queue_and_where_it_is(tmp_path: Path):
    queue = tmp_path / "jobs.sqlite"
    s = start_geartrain(tmp_path, "--queue", f"sqlite:///{queue}?table=t1")
    try:
        assert f"queue sqlite {queue} table t1; " in s.log.read_text()
    finally:
        s.stop()


def test_start_up_line_names_a_database_without_its_password(tmp_path: Path):
    import asyncio

    from tests.server.store.backends import Backend, need_service

    need_service("postgres")
    backend = Backend("postgres", tmp_path)
    url = backend.url.replace("postgresql://postgres@", "postgresql://postgres:s3cret@")  # trust: any password
    s = start_geartrain(tmp_path, "--queue", url)
    try:
        text = s.log.read_text()
        assert f"queue postgres postgresql://postgres:***@127.0.0.1:5432/test table {backend.name}; " in text
        assert "s3cret" not in text
    finally:
        s.stop()
        asyncio.run(backend.drop())


def _syslog_socket(tmp_path: Path) -> tuple[socket.socket, str]:
    """A unix datagram socket standing in for /dev/log (its path within the 108 bytes a socket path may have)."""
    import tempfile

    path = str(tmp_path / "log.sock")
    if len(path) > 100:
        path = tempfile.mkdtemp(prefix="gt") + "/log.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    return sock, path


def test_syslog_gets_every_line_with_ident_pid_and_priority(tmp_path: Path):
    sock, path = _syslog_socket(tmp_path)
    try:
        s = start_geartrain(tmp_path, "--syslog", "--syslog-socket", path)
        try:
            line = sock.recv(65536)
            assert line.startswith(b"<13>geartrain[%d]: NOTICE geartrain " % s.proc.pid)  # user.notice
            assert b" listening on 127.0.0.1:%d" % s.port in line
            assert "listening on" in s.log.read_text()  # the log file still has it too, as with gearmand
        finally:
            s.stop()
        assert sock.recv(65536).startswith(b"<13>geartrain[%d]: NOTICE shutting down" % s.proc.pid)
    finally:
        sock.close()


def test_syslog_priorities_follow_the_levels(tmp_path: Path):
    import logging

    from geartrain.server.app import LEVELS, syslog_handler

    sock, path = _syslog_socket(tmp_path)
    handler = syslog_handler(path, "plain")
    try:
        for name, prio in (("FATAL", 0), ("ALERT", 1), ("CRITICAL", 2), ("ERROR", 3), ("WARNING", 4),
                           ("NOTICE", 5), ("INFO", 6), ("DEBUG", 7)):
            handler.emit(logging.LogRecord("geartrain", LEVELS[name], "", 0, "m\nx", (), None))
            assert sock.recv(4096) == b"<%d>geartrain[%d]: %s m\\nx\0" % (8 + prio, os.getpid(), name.encode())
    finally:
        handler.close()
        sock.close()


def test_syslog_that_nobody_listens_on_is_said_once_and_the_server_runs(tmp_path: Path):
    s = start_geartrain(tmp_path, "--syslog", "--syslog-socket", str(tmp_path / "nobody.sock"))
    try:
        text = s.log.read_text()
        assert text.count("--syslog: cannot reach the syslog socket") == 1 and "listening on" in text
        assert "Logging error" not in text
    finally:
        s.stop()
