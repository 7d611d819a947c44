"""kill -9 of `python -m geartrain serve --queue URL`, again and again, on every durable backend:
no background job whose JOB_CREATED reached its submitter is lost (at-least-once: a job that was
running at the kill, or whose completion was not committed yet, may run again), and once every
job has run, nothing is left in the store.

While the server is up, one connection submits background jobs (half with a unique, half with an
empty one) in pipelined bursts and a worker takes and completes jobs; at a random moment the
server gets SIGKILL, and a new one starts on the same queue.
"""

from __future__ import annotations

import asyncio
import random
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from geartrain.protocol.codec import Parser, pack_req
from geartrain.protocol.packets import RES, T
from tests.conftest import Server, start_geartrain
from tests.server.store.backends import (
    COMMIT_MARK,
    KINDS,
    PORTS,
    Backend,
    Proxy,
    fill,
    need_service,
    small_filesystem,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROUNDS = 4
FUNC = b"durable"


@pytest.fixture(params=KINDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    need_service(request.param)
    b = Backend(request.param, tmp_path)
    yield b
    asyncio.run(b.drop())


class Peer:
    """A blocking Gearman connection speaking packets through geartrain's codec."""

    def __init__(self, server: Server) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.parser = Parser(expect=RES)
        self.events: list = []

    def send(self, *packets: bytes) -> None:
        self.sock.sendall(b"".join(packets))

    def recv(self) -> tuple[int, list[bytes]]:
        while not self.events:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self.events += self.parser.feed(data)
        return self.events.pop(0)

    def close(self) -> None:
        self.sock.close()


def submitter(server: Server, start: int, acked: set[bytes], stop: threading.Event) -> None:
    """Submit bursts of 25 background jobs until STOP or the server dies; note every JOB_CREATED."""
    try:
        peer = Peer(server)
        n = start
        while not stop.is_set():
            burst = [b"job-%d" % i for i in range(n, n + 25)]
            n += 25
            peer.send(*(pack_req(T.SUBMIT_JOB_BG, FUNC, data if int(data[4:]) % 2 else b"", data) for data in burst))
            for data in burst:
                ptype, _ = peer.recv()
                if ptype == T.JOB_CREATED:
                    acked.add(data)
            time.sleep(0.005)
    except OSError:
        pass


def worker(server: Server, seen: set[bytes], stop: threading.Event, pause: float = 0.002) -> None:
    """Take and complete jobs until STOP or the server dies; note every workload received."""
    try:
        peer = Peer(server)
        peer.send(pack_req(T.CAN_DO, FUNC), pack_req(T.GRAB_JOB_UNIQ))
        while not stop.is_set():
            ptype, args = peer.recv()
            if ptype == T.JOB_ASSIGN_UNIQ:
                handle, _function, _unique, data = args
                seen.add(data)
                time.sleep(pause)
                peer.send(pack_req(T.WORK_COMPLETE, handle, b"ok"), pack_req(T.GRAB_JOB_UNIQ))
            else:
                time.sleep(0.01)
                peer.send(pack_req(T.GRAB_JOB_UNIQ))
    except OSError:
        pass


def test_kill_9_loses_no_acknowledged_job(backend: Backend, tmp_path: Path):
    rng = random.Random()
    acked: set[bytes] = set()
    seen: set[bytes] = set()
    for round_ in range(ROUNDS):
        server = start_geartrain(tmp_path, "--queue", backend.url)
        stop = threading.Event()
        threads = [threading.Thread(target=submitter, args=(server, round_ * 1_000_000, acked, stop)),
                   threading.Thread(target=worker, args=(server, seen, stop))]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.3, 1.2))
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        stop.set()
        for t in threads:
            t.join(15)
        assert not any(t.is_alive() for t in threads)
    assert len(acked) >= 25, "the submitter got too few jobs through to test anything"

    # A last server replays what is left; a worker drains it.
    server = start_geartrain(tmp_path, "--queue", backend.url)
    try:
        stop = threading.Event()
        t = threading.Thread(target=worker, args=(server, seen, stop, 0.0))
        t.start()
        deadline = time.monotonic() + 60
        while not acked <= seen and time.monotonic() < deadline:
            time.sleep(0.1)
        missing = acked - seen
        assert not missing, f"{len(missing)} acknowledged job(s) lost, e.g. {sorted(missing)[:5]}"
        # every job ran: the store empties (dones are committed shortly after WORK_COMPLETE)
        while asyncio.run(backend.count()) and time.monotonic() < deadline:
            time.sleep(0.2)
        stop.set()
        t.join(15)
        assert asyncio.run(backend.count()) == 0, "jobs left in the store after all of them ran"
    finally:
        server.stop()


class ThreadedProxy:
    """backends.Proxy on its own event loop thread, for tests that are not async themselves."""

    def __init__(self, target_port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.proxy = Proxy(target_port)
        self._run(self.proxy.start())

    def _run(self, coro) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    @property
    def port(self) -> int:
        return self.proxy.port

    def cut(self) -> None:
        self._run(self.proxy.cut())

    def restore(self) -> None:
        self._run(self.proxy.restore())

    def hold_replies_after(self, pattern: bytes) -> None:
        self.loop.call_soon_threadsafe(self.proxy.hold_replies_after, pattern)

    def wait_held(self, timeout: float = 10.0) -> None:
        self._run(asyncio.wait_for(self.proxy.held.wait(), timeout))

    def close(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "sqlite"])
def test_database_outage_gives_queue_error_then_recovers(kind: str, tmp_path: Path):
    """The network to the database is cut: submitters get ERROR QUEUE_ERROR, the server stays up
    and says so in its log; when the network is back it reconnects by itself, and every job it
    acknowledged runs."""
    need_service(kind)
    proxy = ThreadedProxy(PORTS[kind])
    backend = Backend(kind, tmp_path, port=proxy.port)
    server = start_geartrain(tmp_path, "--queue", backend.url, "--verbose", "INFO")
    acked: set[bytes] = set()
    try:
        client = Peer(server)

        def submit(data: bytes) -> tuple[int, list[bytes]]:
            client.send(pack_req(T.SUBMIT_JOB_BG, FUNC, data, data))
            return client.recv()

        for i in range(5):
            assert submit(b"before-%d" % i)[0] == T.JOB_CREATED
            acked.add(b"before-%d" % i)
        proxy.cut()
        for i in range(3):
            ptype, args = submit(b"during-%d" % i)
            assert (ptype, args[0]) == (T.ERROR, b"QUEUE_ERROR")
        assert server.proc.poll() is None
        proxy.restore()
        deadline = time.monotonic() + 20
        n = 0
        while True:
            ptype, args = submit(b"after-%d" % n)
            if ptype == T.JOB_CREATED:
                acked.add(b"after-%d" % n)
                break
            assert (ptype, args[0]) == (T.ERROR, b"QUEUE_ERROR") and time.monotonic() < deadline
            n += 1
            time.sleep(0.2)
        seen: set[bytes] = set()
        stop = threading.Event()
        t = threading.Thread(target=worker, args=(server, seen, stop, 0.0))
        t.start()
        while not acked <= seen and time.monotonic() < deadline + 10:
            time.sleep(0.05)
        stop.set()
        t.join(15)
        assert acked <= seen
        client.close()
    finally:
        server.stop()
        proxy.close()
        asyncio.run(backend.drop())
    log = server.log.read_text()
    assert "lost" in log and "reconnected" in log, log[-2000:]


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "sqlite"])
def test_a_job_answered_queue_error_never_runs(kind: str, tmp_path: Path):
    """Three times, the network to the database breaks after it committed a batch of submissions and
    before its reply came back, and the store's one retry cannot connect: the submitters get ERROR
    QUEUE_ERROR ("the job is not created") although the jobs are in the database. Once it is
    reachable again none of them runs (the server deletes them before anything else), not even after
    a restart, and every job answered JOB_CREATED does."""
    need_service(kind)
    proxy = ThreadedProxy(PORTS[kind])
    backend = Backend(kind, tmp_path, port=proxy.port)
    server = start_geartrain(tmp_path, "--queue", backend.url)
    acked: set[bytes] = set()
    refused: set[bytes] = set()
    try:
        client = Peer(server)

        def send(*payloads: bytes) -> None:
            client.send(*(pack_req(T.SUBMIT_JOB_BG, FUNC, data, data) for data in payloads))

        for round_ in range(3):
            send(*(b"before-%d-%d" % (round_, i) for i in range(3)))
            for i in range(3):
                assert client.recv()[0] == T.JOB_CREATED
                acked.add(b"before-%d-%d" % (round_, i))
            lost = [b"lost-%d-%d" % (round_, i) for i in range(5)]
            proxy.hold_replies_after(COMMIT_MARK[kind])
            send(*lost)
            proxy.wait_held()
            deadline = time.monotonic() + 10
            while not all(asyncio.run(backend.has_job(FUNC, data)) for data in lost):
                assert time.monotonic() < deadline, "the submissions never reached the database"
                time.sleep(0.02)
            proxy.cut()
            for data in lost:
                ptype, args = client.recv()
                assert (ptype, args[0]) == (T.ERROR, b"QUEUE_ERROR"), (ptype, args)
                refused.add(data)
            proxy.restore()
            deadline = time.monotonic() + 20
            n = 0
            while True:  # the store reconnects (and settles the lost jobs) at its next attempt
                data = b"after-%d-%d" % (round_, n)
                send(data)
                ptype, args = client.recv()
                if ptype == T.JOB_CREATED:
                    acked.add(data)
                    break
                assert (ptype, args[0]) == (T.ERROR, b"QUEUE_ERROR") and time.monotonic() < deadline
                n += 1
                time.sleep(0.1)
            assert not any(asyncio.run(backend.has_job(FUNC, data)) for data in lost)
        client.close()
        server.stop()
        server = start_geartrain(tmp_path, "--queue", backend.url)  # replays what is stored
        seen: set[bytes] = set()
        stop = threading.Event()
        t = threading.Thread(target=worker, args=(server, seen, stop, 0.0))
        t.start()
        deadline = time.monotonic() + 20
        while (not acked <= seen or asyncio.run(backend.count())) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        t.join(15)
        assert acked <= seen and asyncio.run(backend.count()) == 0
        assert not refused & seen, f"{len(refused & seen)} job(s) answered QUEUE_ERROR ran"
    finally:
        server.stop()
        proxy.close()
        asyncio.run(backend.drop())


def submit_bg(server: Server, *payloads: bytes, unique: bytes = b"") -> list[bytes]:
    """Submit background jobs (one connection, pipelined); their handles, once all are acknowledged."""
    peer = Peer(server)
    peer.send(*(pack_req(T.SUBMIT_JOB_BG, FUNC, unique, data) for data in payloads))
    handles = []
    for _ in payloads:
        ptype, args = peer.recv()
        assert ptype == T.JOB_CREATED, (ptype, args)
        handles.append(args[0])
    peer.close()
    return handles


def take(server: Server, count: int, wait: float = 5.0) -> list[tuple[bytes, bytes]]:
    """Run COUNT jobs as a worker (giving up after WAIT seconds); their (unique, data)."""
    peer = Peer(server)
    peer.send(pack_req(T.CAN_DO, FUNC), pack_req(T.GRAB_JOB_UNIQ))
    got = []
    deadline = time.monotonic() + wait
    while len(got) < count and time.monotonic() < deadline:
        ptype, args = peer.recv()
        if ptype == T.JOB_ASSIGN_UNIQ:
            handle, _function, unique, data = args
            got.append((unique, data))
            peer.send(pack_req(T.WORK_COMPLETE, handle, b""), pack_req(T.GRAB_JOB_UNIQ))
        else:
            time.sleep(0.02)
            peer.send(pack_req(T.GRAB_JOB_UNIQ))
    peer.close()
    return got


@pytest.mark.parametrize("unique", [b"", b"-"])
def test_keyless_jobs_keep_their_identity_across_restarts(unique: bytes, tmp_path: Path):
    """Jobs with an empty unique (or '-', coalesce by data) are stored under generated keys: after a
    restart they still have that unique, and new such jobs never take over a replayed job's record."""
    backend = Backend("sqlite", tmp_path)
    server = start_geartrain(tmp_path, "--queue", backend.url)
    try:
        submit_bg(server, *(b"first-%d" % i for i in range(10)), unique=unique)
        assert sorted(d for _, d in take(server, 5)) == sorted(b"first-%d" % i for i in range(5))
        deadline = time.monotonic() + 10
        while asyncio.run(backend.count()) != 5 and time.monotonic() < deadline:  # the dones are committed
            time.sleep(0.05)
    finally:
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
    server = start_geartrain(tmp_path, "--queue", backend.url)
    try:  # five replayed; five new ones get the handles the old ones were stored under
        submit_bg(server, *(b"second-%d" % i for i in range(5)), unique=unique)
    finally:
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
    server = start_geartrain(tmp_path, "--queue", backend.url)
    try:
        got = take(server, 10)
        want = [b"first-%d" % i for i in range(5, 10)] + [b"second-%d" % i for i in range(5)]
        assert sorted(d for _, d in got) == sorted(want)
        assert {u for u, _ in got} == {unique}
    finally:
        server.stop()


def test_a_full_disk_does_not_make_finished_jobs_run_again(tmp_path: Path):
    """The SQLite queue on a real filesystem that fills up (a small tmpfs): submissions get ERROR
    QUEUE_ERROR, finished jobs are still deleted, so after a restart none of them runs again; the
    log says "no room" once and nothing of lost connections; with room again, jobs are stored."""
    with small_filesystem(tmp_path) as fs:
        backend = Backend("sqlite", fs)
        server = start_geartrain(tmp_path, "--queue", backend.url, "--verbose", "INFO")
        try:
            for start in range(0, 1000, 250):
                submit_bg(server, *(b"job-%d" % i for i in range(start, start + 250)))
            filler = fill(fs)
            peer = Peer(server)
            peer.send(*(pack_req(T.SUBMIT_JOB_BG, FUNC, b"", b"x" * 100_000) for _ in range(20)))
            replies = [peer.recv() for _ in range(20)]
            assert {(ptype, args[0]) for ptype, args in replies} == {(T.ERROR, b"QUEUE_ERROR")}
            peer.close()
            assert len(take(server, 1000, wait=30)) == 1000
            deadline = time.monotonic() + 20
            while asyncio.run(backend.count()) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert asyncio.run(backend.count()) == 0, "finished jobs left in the store"
        finally:
            server.stop()
        log = server.log.read_text()
        assert log.count("no room") == 1 and "lost" not in log and "reconnect" not in log, log[-3000:]
        server = start_geartrain(tmp_path, "--queue", backend.url, "--verbose", "INFO")  # the disk still full
        try:
            assert take(server, 1, wait=1.0) == []  # nothing runs again
            filler.unlink()
            deadline = time.monotonic() + 10
            while True:  # the reserve is taken back within a second, then jobs are stored again
                peer = Peer(server)
                peer.send(pack_req(T.SUBMIT_JOB_BG, FUNC, b"", b"after"))
                ptype, _ = peer.recv()
                peer.close()
                if ptype == T.JOB_CREATED:
                    break
                assert time.monotonic() < deadline, "jobs were never stored again"
                time.sleep(0.2)
            assert take(server, 1) == [(b"", b"after")]
        finally:
            server.stop()


def local_ports(pid: int, remote_port: int) -> list[int]:
    """Local ports of PID's TCP connections to 127.0.0.1:REMOTE_PORT (from /proc)."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if inode in inodes and int(remote.split(":")[1], 16) == remote_port:
            ports.append(int(local.split(":")[1], 16))
    return ports


async def kill_server_connections(backend: Backend, pid: int) -> int:
    """End, from the database side, every connection the server PID has to it; how many."""
    ports = local_ports(pid, PORTS[backend.kind])
    if backend.kind == "postgres":
        rows = await backend.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE client_port = ANY($1)",
                                 ports)
        return len(rows)
    if backend.kind == "mysql":
        rows = await backend.sql("SELECT id, host FROM information_schema.processlist")
        ids = [i for i, host in rows if any(str(host).endswith(f":{p}") for p in ports)]
        for i in ids:
            await backend.sql(f"KILL {int(i)}")
        return len(ids)
    for p in ports:
        await backend.redis("CLIENT", "KILL", "ADDR", f"127.0.0.1:{p}")
    return len(ports)


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "sqlite"])
def test_database_kills_our_connection_during_load(kind: str, tmp_path: Path):
    """pg_terminate_backend / KILL / CLIENT KILL of the server's connection, five times while jobs
    are submitted and worked: the server replaces it by itself and every acknowledged job runs."""
    need_service(kind)
    backend = Backend(kind, tmp_path)
    server = start_geartrain(tmp_path, "--queue", backend.url)
    acked: set[bytes] = set()
    seen: set[bytes] = set()
    stop = threading.Event()
    threads = [threading.Thread(target=submitter, args=(server, 0, acked, stop)),
               threading.Thread(target=worker, args=(server, seen, stop))]
    try:
        for t in threads:
            t.start()
        killed = 0
        for _ in range(5):
            time.sleep(0.3)
            killed += asyncio.run(kill_server_connections(backend, server.proc.pid))
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(15)
        assert killed >= 5 and server.proc.poll() is None
        stop = threading.Event()
        drain = threading.Thread(target=worker, args=(server, seen, stop, 0.0))
        drain.start()
        deadline = time.monotonic() + 30
        while not acked <= seen and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        drain.join(15)
        assert acked and acked <= seen, f"{len(acked - seen)} acknowledged job(s) never ran"
    finally:
        stop.set()
        server.stop()
        asyncio.run(backend.drop())
    assert "lost" in server.log.read_text()


def test_completed_failed_excepted_and_cancelled_jobs_leave_the_store(tmp_path: Path):
    backend = Backend("sqlite", tmp_path)
    server = start_geartrain(tmp_path, "--queue", backend.url)
    try:
        handles = submit_bg(server, b"complete", b"fail", b"exception", b"cancel", unique=b"")
        assert asyncio.run(backend.count()) == 4
        admin = socket.create_connection((server.host, server.port), timeout=10)
        admin.sendall(b"cancel job " + handles[3] + b"\r\n")
        assert admin.recv(100).startswith(b"OK")
        admin.close()
        peer = Peer(server)
        peer.send(pack_req(T.CAN_DO, FUNC))
        endings = (b"complete", b"fail", b"exception")
        for _ in range(3):
            peer.send(pack_req(T.GRAB_JOB_UNIQ))
            ptype, args = peer.recv()
            assert ptype == T.JOB_ASSIGN_UNIQ and args[3] in endings
            handle, data = args[0], args[3]
            how = {b"complete": (T.WORK_COMPLETE, handle, b"r"), b"fail": (T.WORK_FAIL, handle),
                   b"exception": (T.WORK_EXCEPTION, handle, b"e")}[data]
            peer.send(pack_req(*how))
        peer.send(pack_req(T.GRAB_JOB_UNIQ))
        assert peer.recv()[0] == T.NO_JOB  # the cancelled job is gone
        deadline = time.monotonic() + 10
        while asyncio.run(backend.count()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert asyncio.run(backend.count()) == 0
        peer.close()
    finally:
        server.stop()


def test_replay_keeps_priority_unique_and_run_at_time(backend: Backend, tmp_path: Path):
    """LOW, NORMAL and HIGH background jobs and an EPOCH job an hour ahead, then kill -9: the new
    server hands them out HIGH first with their uniques, and keeps the EPOCH job until its time."""
    server = start_geartrain(tmp_path, "--queue", backend.url)
    try:
        peer = Peer(server)
        later = b"%d" % (time.time() + 3600)
        peer.send(pack_req(T.SUBMIT_JOB_LOW_BG, FUNC, b"u-low", b"low"),
                  pack_req(T.SUBMIT_JOB_BG, FUNC, b"u-normal", b"normal"),
                  pack_req(T.SUBMIT_JOB_HIGH_BG, FUNC, b"u-high", b"high"),
                  pack_req(T.SUBMIT_JOB_EPOCH, FUNC, b"u-later", later, b"later"))
        assert [peer.recv()[0] for _ in range(4)] == [T.JOB_CREATED] * 4
        peer.close()
    finally:
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
    server = start_geartrain(tmp_path, "--queue", backend.url)
    try:
        assert take(server, 4, wait=2.0) == [(b"u-high", b"high"), (b"u-normal", b"normal"), (b"u-low", b"low")]
        deadline = time.monotonic() + 10
        while asyncio.run(backend.count()) != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert asyncio.run(backend.count()) == 1
    finally:
        server.stop()
