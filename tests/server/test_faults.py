"""Faults, done for real against `geartrain serve`: killed workers, vanishing and non-reading clients,
10,000 connections and many thousand connect/submit/disconnect rounds, and a server restarted
under connected clients and workers.

Every test is bounded in time and count. ``GEARTRAIN_SOAK=1`` runs the connection test at its full
size (100,000 rounds); the default is 20,000 rounds. The figures each run measured are printed
(``pytest -s``) and recorded in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from geartrain.client import Client
from geartrain.errors import ConnectionLost, JobFailed, NoServerAvailable
from geartrain.protocol.codec import pack_req
from geartrain.protocol.packets import HEADER_SIZE, T
from geartrain.worker import Worker
from tests.conftest import ROOT, Server, free_port, start_geartrain
from tests.server.test_tls import read_packets, wait_log

SOAK = os.environ.get("GEARTRAIN_SOAK") == "1"

WORKER_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from geartrain.worker import Worker
    address, mode, marker = sys.argv[1:4]
    def run(job):
        open(marker, "a").write(f"{os.getpid()} {job.handle.decode()}\\n")
        if mode == "hang":
            time.sleep(60)
        return b"done by " + str(os.getpid()).encode()
    w = Worker(address, max_backoff=0.2)
    w.register("slow", run)
    w.work(max_jobs=1)
""")


def start_worker(server: Server, mode: str, marker: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, server.address, mode, str(marker)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_lines(path: Path, n: int, timeout: float = 15.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            lines = path.read_text().splitlines()
            if len(lines) >= n:
                return lines
        time.sleep(0.05)
    raise AssertionError(f"{path} has fewer than {n} lines")


def admin(server: Server, line: bytes) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(line + b"\r\n")
        buf = b""
        while not (buf.endswith(b".\n") or buf.endswith(b"\r\n")):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        return buf


def proc_figures(pid: int) -> tuple[int, int]:
    """(open file descriptors, resident set size in KiB) of a process."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return fds, rss


# ---------------------------------------------------------------------- workers killed mid-job


def test_worker_killed_mid_job_another_worker_gets_it(tmp_path: Path):
    server = start_geartrain(tmp_path, "-j", "3", "--verbose", "INFO")
    marker = tmp_path / "ran"
    workers = []
    try:
        with Client(server.address, timeout=30) as client:
            job = client.submit_job("slow", b"payload")
            workers.append(start_worker(server, "hang", marker))
            lines = wait_lines(marker, 1)
            job_created = job.handle  # known: a worker has it
            first_pid = int(lines[0].split()[0])
            os.kill(first_pid, signal.SIGKILL)  # in the middle of the job
            workers[0].wait(10)
            workers.append(start_worker(server, "finish", marker))
            result = job.result(30)
        lines = wait_lines(marker, 2)
        assert result == b"done by " + lines[1].split()[0].encode()
        assert lines[0].split()[1] == lines[1].split()[1] == job_created.decode()  # the same job, run again
        assert b"slow\t0\t0\t" in admin(server, b"status")
    finally:
        for w in workers:
            w.kill()
            w.wait(5)
        server.stop()


def test_job_fails_after_n_workers_died_running_it(tmp_path: Path):
    tries = 2
    server = start_geartrain(tmp_path, "-j", str(tries), "--verbose", "INFO")
    marker = tmp_path / "ran"
    workers = []
    try:
        with Client(server.address, timeout=30) as client:
            job = client.submit_job("slow", b"payload")
            for n in range(1, tries + 1):
                workers.append(start_worker(server, "hang", marker))
                pid = int(wait_lines(marker, n)[n - 1].split()[0])
                os.kill(pid, signal.SIGKILL)
                workers[-1].wait(10)
            with pytest.raises(JobFailed):
                job.result(15)
        log = wait_log(server, "Dropped job due to max retry count")
        assert f"after {tries} tries (worker disconnected)" in log
        assert admin(server, b"show jobs") == b".\n"
    finally:
        for w in workers:
            w.kill()
            w.wait(5)
        server.stop()


# ---------------------------------------------------------------------- clients that go away or never read


def raw(server: Server) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=5)


def test_client_leaving_a_running_foreground_job_result_dropped_quietly(tmp_path: Path):
    server = start_geartrain(tmp_path, "--verbose", "INFO")
    try:
        worker, leaver, bg_client = raw(server), raw(server), raw(server)
        worker.sendall(pack_req(T.CAN_DO, b"f"))
        leaver.sendall(pack_req(T.SUBMIT_JOB, b"f", b"", b"foreground"))
        assert read_packets(leaver, 1)[0][0] == "JOB_CREATED"
        bg_client.sendall(pack_req(T.SUBMIT_JOB_BG, b"f", b"", b"background"))
        bg_handle = read_packets(bg_client, 1)[0][1][0]
        worker.sendall(pack_req(T.GRAB_JOB))
        (name, (handle, _, data)), = read_packets(worker, 1)
        assert (name, data) == ("JOB_ASSIGN", b"foreground")
        leaver.close()  # the client goes away while its job runs
        time.sleep(0.2)
        worker.sendall(pack_req(T.WORK_DATA, handle, b"partial") + pack_req(T.WORK_STATUS, handle, b"1", b"2")
                       + pack_req(T.WORK_COMPLETE, handle, b"result") + pack_req(T.GRAB_JOB))
        got = read_packets(worker, 1)  # no ERROR for the results nobody waits for: the next job comes
        assert got[0][0] == "JOB_ASSIGN" and got[0][1][2] == b"background"
        worker.sendall(pack_req(T.WORK_COMPLETE, got[0][1][0], b"bg result") + pack_req(T.ECHO_REQ, b"end"))
        assert read_packets(worker, 1) == [("ECHO_RES", (b"end",))]
        bg_client.sendall(pack_req(T.GET_STATUS, bg_handle))
        assert read_packets(bg_client, 1) == [("STATUS_RES", (bg_handle, b"0", b"0", b"0", b"0"))]
        assert b"f\t0\t0\t1\n" in admin(server, b"status")
        log = server.log.read_text()
        assert "ERROR" not in log and "WARNING" not in log, log
        worker.close()
        bg_client.close()
    finally:
        server.stop()


def test_client_that_never_reads_is_closed_past_the_output_limit(tmp_path: Path):
    server = start_geartrain(tmp_path, "--max-output-buffer", "1M", "--verbose", "INFO")
    try:
        sleeper = socket.socket()
        sleeper.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sleeper.settimeout(5)
        sleeper.connect((server.host, server.port))
        sleeper.sendall(pack_req(T.SUBMIT_JOB, b"flood", b"", b""))
        worker = raw(server)
        worker.sendall(pack_req(T.CAN_DO, b"flood") + pack_req(T.GRAB_JOB))
        handle = read_packets(worker, 1)[0][1][0]
        bystander = raw(server)
        chunk = pack_req(T.WORK_DATA, handle, b"x" * 65536)
        sent = 0
        for i in range(400):  # 26 MB of partial results for a client that reads none of them
            worker.sendall(chunk)
            sent += len(chunk)
            if i % 20 == 0:  # another connection notices nothing
                bystander.sendall(pack_req(T.ECHO_REQ, b"%d" % i))
                assert read_packets(bystander, 1) == [("ECHO_RES", (b"%d" % i,))]
        log = wait_log(server, "does not read its replies")
        assert "closing connection" in log
        worker.sendall(pack_req(T.WORK_COMPLETE, handle, b"") + pack_req(T.ECHO_REQ, b"worker ok"))
        assert read_packets(worker, 1) == [("ECHO_RES", (b"worker ok",))]
        _, rss = proc_figures(server.proc.pid)
        print(f"\nnon-reading client: {sent} bytes sent at it, server RSS afterwards {rss} KiB")
        assert rss < 200 * 1024  # the 26 MB were not kept
        sleeper.close()
        worker.close()
        bystander.close()
    finally:
        server.stop()


# ---------------------------------------------------------------------- many connections, many rounds


def _raise_nofile(want: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(want, hard) if hard != resource.RLIM_INFINITY else want
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def _read_packet(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(HEADER_SIZE)
    size = int.from_bytes(header[8:12], "big")
    return header + await reader.readexactly(size)


async def _hold_connections(host: str, port: int, n: int) -> tuple[int, list]:
    """Open N connections at once, prove each alive with an ECHO round trip, and return them open."""
    slots = asyncio.Semaphore(256)
    conns: list = []

    async def one(i: int) -> None:
        async with slots:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(pack_req(T.ECHO_REQ, b"%d" % i))
            packet = await _read_packet(reader)
            assert packet.endswith(b"%d" % i)
            conns.append((reader, writer))

    await asyncio.gather(*(one(i) for i in range(n)))
    return len(conns), conns


async def _rounds(host: str, port: int, n: int, concurrency: int) -> int:
    """N rounds of connect, SUBMIT_JOB (no worker: the job waits), read JOB_CREATED, disconnect."""
    done = 0
    todo = iter(range(n))
    payload = pack_req(T.SUBMIT_JOB, b"soak", b"", b"x" * 100)

    async def runner() -> None:
        nonlocal done
        for _ in todo:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(payload)
            packet = await _read_packet(reader)
            assert packet[4:8] == int(T.JOB_CREATED).to_bytes(4, "big")
            writer.close()
            done += 1

    await asyncio.gather(*(runner() for _ in range(concurrency)))
    return done


def _settle(pid: int, fds_target: int, timeout: float = 15.0) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    fds, rss = proc_figures(pid)
    while fds > fds_target and time.monotonic() < deadline:
        time.sleep(0.1)
        fds, rss = proc_figures(pid)
    return fds, rss


def test_ten_thousand_connections_and_many_rounds_leak_nothing(tmp_path: Path):
    connections = 10_000
    rounds = 100_000 if SOAK else 20_000
    limit = _raise_nofile(connections + 1000)
    if limit < connections + 100:
        pytest.skip(f"RLIMIT_NOFILE hard limit {limit} is too low for {connections} connections (see README)")
    server = start_geartrain(tmp_path, "-f", str(connections + 1000), "--backlog", "4096")
    try:
        from geartrain.transport import run

        pid = server.proc.pid
        run(_rounds(server.host, server.port, 2000, 100))  # warm up the allocator and the caches
        fds0, rss0 = _settle(pid, 0, timeout=0.5)

        async def hold() -> tuple[int, int, int]:
            count, conns = await _hold_connections(server.host, server.port, connections)
            fds_peak, rss_peak = proc_figures(pid)
            for _, writer in conns:
                writer.close()
            await asyncio.sleep(0)
            return count, fds_peak, rss_peak

        started = time.monotonic()
        count, fds_peak, rss_peak = run(hold())
        hold_time = time.monotonic() - started
        fds1, rss1 = _settle(pid, fds0)
        started = time.monotonic()
        done = run(_rounds(server.host, server.port, rounds, 200))
        rounds_time = time.monotonic() - started
        fds2, rss2 = _settle(pid, fds0)
        status = admin(server, b"status")
        workers = admin(server, b"workers")
        print(f"\n{count} concurrent connections in {hold_time:.1f}s: server fds {fds0} -> {fds_peak} (peak) -> "
              f"{fds1}; RSS {rss0} -> {rss_peak} (peak) -> {rss1} KiB\n"
              f"{done} connect/submit/disconnect rounds in {rounds_time:.1f}s: server fds {fds1} -> {fds2}; "
              f"RSS {rss1} -> {rss2} KiB")
        assert count == connections and fds_peak >= fds0 + connections
        assert done == rounds
        assert fds1 <= fds0 and fds2 <= fds0  # every socket closed
        assert rss2 - rss1 < 25 * 1024  # a leak of a Peer (or its job) per round would be far more
        assert b"soak\t0\t0\t0\n" in status  # every abandoned job was dropped with its client
        assert workers.count(b"\n") == 2  # only the admin connection that asked (and the ".")
        assert "Traceback" not in server.log.read_text()
    finally:
        server.stop()


# ---------------------------------------------------------------------- the server restarted under its peers


def test_server_restart_clients_and_workers_reconnect_and_lose_nothing(tmp_path: Path):
    port = free_port()
    queue = ["--queue", f"sqlite:///{tmp_path / 'queue.sqlite'}"]
    server = start_geartrain(tmp_path, *queue, "--verbose", "INFO", port=port)
    ran: set[bytes] = set()
    lock = threading.Lock()

    def work(job) -> bytes:  # noqa: ANN001
        with lock:
            ran.add(job.unique)
        return b"ok"

    worker = Worker(server.address, max_backoff=0.3)
    worker.register("restartable", work)
    worker.register("echo", lambda job: job.data)
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    acknowledged: set[bytes] = set()
    errors: list[BaseException] = []
    restarts = 0
    try:
        with Client(server.address, timeout=20, wait_for_server=20, max_backoff=0.3) as client:
            total = 300
            for i in range(total):
                unique = b"job-%d" % i
                try:
                    client.submit_background("restartable", b"x", unique=unique)
                    acknowledged.add(unique)
                except (ConnectionLost, NoServerAvailable) as exc:  # in flight while the server died
                    errors.append(exc)
                if i in (100, 200):
                    sig = signal.SIGKILL if i == 100 else signal.SIGTERM
                    server.proc.send_signal(sig)
                    server.proc.wait(10)
                    server = start_geartrain(tmp_path, *queue, "--verbose", "INFO", port=port)
                    restarts += 1
            assert client.submit("echo", b"after the restarts") == b"after the restarts"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if acknowledged <= ran:
                    break
            time.sleep(0.1)
        with lock:
            lost = acknowledged - ran
        print(f"\nrestarts {restarts}: {len(acknowledged)} background jobs acknowledged, {len(ran)} run, "
              f"{len(lost)} lost, {len(errors)} submissions refused while the server was down")
        assert restarts == 2
        assert len(acknowledged) >= total - 10
        assert not lost
    finally:
        worker.stop()
        thread.join(10)
        server.stop()


def test_abandoned_jobs_do_not_pile_up_in_the_queue():
    """The leak the rounds test found: each client that submits and leaves, with no worker to drain the
    queue, left its dead job in the deque (lazy deletion) for ever."""
    from geartrain.protocol.packets import T as Types
    from tests.server.helpers import Harness

    h = Harness()
    keeper = h.peer()
    h.submit(keeper, b"soak", data=b"kept")
    for _ in range(10_000):
        p = h.peer()
        h.submit(p, b"soak", data=b"x" * 100)
        h.state.disconnect(p)
    f = h.state.functions[b"soak"]
    assert f.queued[1] == 1 and len(f.queues[1]) < 200
    worker = h.worker(b"soak")
    assert h.grab(worker)[1][2] == b"kept"  # the live job survived the compactions, in order
    h.send(worker, Types.GRAB_JOB)
    assert h.names(worker) == ["NO_JOB"]
