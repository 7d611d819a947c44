"""Hostile input: property tests of the codec and the job logic, a bounded fuzz run against a running
server, the malformed inputs kept in tests/server/regressions/cases.toml, and slow or silent peers.

The running-server fuzz lasts GEARTRAIN_FUZZ_SECONDS (default 8) with 8 hostile connections sending
random and mutated packets and admin lines, while a bystander client and worker run real jobs. It
passes when the server is alive, no exception escaped a connection (no "internal error" or
Traceback in the log), every bystander job came back right, and memory stayed bounded.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import threading
import time
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geartrain.protocol.codec import FATAL, PARSE_ERROR, Parser, pack_req
from geartrain.protocol.packets import NFIELDS, PACKETS, REQ, RES, Direction, T
from geartrain.server.commands import Admin
from geartrain.server.jobs import DONE, QUEUED, RUNNING
from tests.conftest import Server, start_geartrain
from tests.server.helpers import Harness
from tests.server.test_faults import admin, proc_figures
from tests.server.test_tls import read_packets, wait_log

FUZZ_SECONDS = float(os.environ.get("GEARTRAIN_FUZZ_SECONDS", "8"))
EXAMPLES = int(os.environ.get("GEARTRAIN_FUZZ_EXAMPLES", "250"))  # of the job-logic property test
REGRESSIONS = Path(__file__).parent / "regressions" / "cases.toml"

REQ_TYPES = [t for t in T if PACKETS[t] is not None and PACKETS[t].direction & Direction.REQ]
ALL_TYPES = [t for t in T if PACKETS[t] is not None]

NAMES = [b"a", b"b", b"\x00\xff", b""]
UNIQUES = [b"", b"u1", b"u2", b"-", b"x" * 65]
NUMBERS = [b"0", b"1", b"-5", b"99999999999999999999", b"x", b"", b"2000000000"]
ADMIN_LINES = [b"status", b"workers", b"prioritystatus", b"show jobs", b"show unique jobs", b"version",
               b"getpid", b"verbose", b"maxqueue a 1", b"maxqueue a 0 0 0", b"maxqueue", b"cancel job H:test:1",
               b"cancel job", b"create function c", b"drop function a", b"drop function b", b"drop function zz",
               b"", b" ", b"\xff\xfe", b"STATUS", b"show", b"show bogus"]


# ---------------------------------------------------------------------- the codec


def _packet_stream() -> st.SearchStrategy[bytes]:
    valid = st.builds(lambda t, args: pack_req(t, *args[:max(NFIELDS[t], 1)] if NFIELDS[t] else ()),
                      st.sampled_from(REQ_TYPES), st.lists(st.binary(max_size=8), min_size=8, max_size=8))
    junk = st.one_of(
        st.binary(max_size=40),
        st.builds(lambda t, size, body: b"\0REQ" + struct.pack(">II", t, size) + body,
                  st.integers(0, 60), st.integers(0, 30), st.binary(max_size=30)),
        st.builds(lambda line: line.replace(b"\n", b"") + b"\r\n", st.binary(min_size=1, max_size=20)),
    )
    return st.lists(st.one_of(valid, junk), max_size=12).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(_packet_stream(), st.lists(st.integers(1, 50), min_size=1, max_size=20))
def test_codec_any_chunking_gives_the_same_events(stream: bytes, cuts: list[int]):
    whole = Parser(REQ).feed(stream)
    parser = Parser(REQ)
    chunked: list = []
    pos = 0
    for n in cuts * (len(stream) // max(sum(cuts), 1) + 1):
        if pos >= len(stream) or parser.broken:
            break
        chunked += parser.feed(stream[pos:pos + n])
        pos += n
    if not parser.broken:
        chunked += parser.feed(stream[pos:])
    assert chunked == whole
    for ptype, args in whole:
        assert isinstance(args, tuple) and all(isinstance(a, bytes) for a in args)
        if ptype > 0:
            assert len(args) == NFIELDS[ptype]
        assert ptype != FATAL or (ptype, args) == whole[-1]  # nothing after a fatal error


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(1, 64))
def test_client_side_codec_never_raises(data: bytes, chunk: int):
    parser = Parser(RES, text=False)
    for i in range(0, len(data), chunk):
        for ptype, _ in parser.feed(data[i:i + chunk]):
            assert ptype in (PARSE_ERROR, FATAL) or PACKETS[ptype].direction & Direction.RES


# ---------------------------------------------------------------------- the job logic


def _args_for(ptype: int, draw: st.DrawFn, handles: list[bytes]) -> tuple[bytes, ...]:
    n = NFIELDS[ptype]
    spec = PACKETS[ptype]
    out = []
    for name in spec.fields[:n]:
        if name in ("function", "function_name"):
            out.append(draw(st.sampled_from(NAMES)))
        elif name == "unique":
            out.append(draw(st.sampled_from(UNIQUES)))
        elif name == "handle":
            out.append(draw(st.sampled_from(handles + [b"H:test:999", b""])))
        elif name in ("numerator", "denominator", "timeout", "epoch", "when", "minute", "hour", "mday", "month",
                      "wday", "day_of_month", "day_of_week"):
            out.append(draw(st.sampled_from(NUMBERS + [b"*", b"1-5", b"*/2"])))
        else:
            out.append(draw(st.binary(max_size=6)))
    while len(out) < n:
        out.append(draw(st.binary(max_size=4)))
    return tuple(out)


def _check_invariants(h: Harness) -> None:
    state = h.state
    live = [job for job in state.jobs.values() if job.state != DONE]
    for f in state.functions.values():
        assert min(f.queued) >= 0 and min(f.delayed) >= 0 and f.running >= 0 and f.workers >= 0, f
        for p in range(3):
            assert f.queued[p] == sum(1 for j in live if j.function is f and j.state == QUEUED and j.priority == p)
        assert f.running == sum(1 for j in live if j.function is f and j.state == RUNNING), f
        assert f.workers == sum(peer.as_worker.abilities.count(f) for peer in state.peers.values()), f
    for job in live:
        if job.state == RUNNING:
            assert job.worker is not None and job.worker.as_worker.jobs.get(job.handle) is job
        for client in job.clients:
            assert client.id in state.peers and job in client.as_client.waiting


@st.composite
def _session(draw: st.DrawFn) -> list[tuple]:
    steps = []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["packet"] * 6 + ["disconnect", "tick", "text"]))
        peer = draw(st.integers(0, 3))
        if kind == "packet":
            steps.append(("packet", peer, draw(st.sampled_from(REQ_TYPES))))
        elif kind == "text":
            steps.append(("text", peer, draw(st.sampled_from(ADMIN_LINES))))
        elif kind == "tick":
            steps.append(("tick", draw(st.sampled_from([0.5, 2.0, 70.0]))))
        else:
            steps.append(("disconnect", peer))
    return steps


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_job_logic_survives_any_packet_sequence(data: st.DataObject):
    h = Harness(job_retries=2)
    admin_cmds = Admin(h.state, version="v", verbose=lambda: "INFO", shutdown=lambda graceful: None)
    h.state.text = admin_cmds.run
    peers = [h.peer() for _ in range(4)]
    for step in data.draw(_session()):
        if step[0] == "packet":
            _, i, ptype = step
            handles = list(h.state.jobs)[:5]
            args = _args_for(ptype, data.draw, handles)
            h.send(peers[i], ptype, *args)
        elif step[0] == "text":
            h.state.text(peers[step[1]], step[2])
        elif step[0] == "tick":
            h.tick(step[1])
        else:
            h.state.disconnect(peers[step[1]])
            peers[step[1]] = h.peer()
        for i, peer in enumerate(peers):  # every binary reply must be a well-formed response packet
            out = h.raw(peer)
            if step[0] != "text" or step[1] != i:  # (admin text may list names that start with a NUL)
                assert all(t > 0 for t, _ in Parser(RES, text=False).feed(out)), out
        _check_invariants(h)
    for peer in peers:
        h.state.disconnect(peer)
    _check_invariants(h)
    for f in h.state.functions.values():
        assert f.running == 0 and f.workers == 0 and not f.sleepers
    for job in h.state.jobs.values():
        assert job.state == DONE or job.background, job  # nobody waits for a foreground job any more


# ---------------------------------------------------------------------- malformed inputs kept as regressions


def _cases() -> list[dict]:
    return tomllib.loads(REGRESSIONS.read_text())["case"]


def _input(case: dict) -> bytes:
    data = bytes.fromhex(case.get("hex", ""))
    if "repeat_hex" in case:
        data += bytes.fromhex(case["repeat_hex"]) * case["times"]
    return data + bytes.fromhex(case.get("tail_hex", ""))


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory):
    server = start_geartrain(tmp_path_factory.mktemp("fuzz"), "--verbose", "INFO", "--job-handle-prefix", "GT")
    yield server
    server.stop()


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["name"])
def test_regression_input(shared_server: Server, case: dict):
    sock = socket.create_connection((shared_server.host, shared_server.port), timeout=5)
    try:
        sock.sendall(_input(case))
    except OSError:  # the server may close while a huge input is still being sent
        pass
    if "reply_text" in case:
        want = case["reply_text"].encode()
        got = b""
        sock.settimeout(5)
        while len(got) < len(want):
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        assert got == want
    else:
        expected = [tuple(e.split(" ", 1)) for e in case.get("expect", [])] * case.get("expect_repeat", 1)
        got = read_packets(sock, len(expected))
        assert [(name, args[0]) if name == "ERROR" else (name, b"") for name, args in got] == \
            [(name, rest.encode()) if name == "ERROR" else (name, b"") for name, rest in
             [(e[0], e[1] if len(e) > 1 else "") for e in expected]]
    if case.get("closed", False):
        sock.settimeout(5)
        try:
            rest = sock.recv(65536)
        except ConnectionResetError:
            rest = b""
        assert rest == b""
    else:  # the connection still works
        sock.sendall(pack_req(T.ECHO_REQ, b"after " + case["name"].encode()))
        assert read_packets(sock, 1) == [("ECHO_RES", (b"after " + case["name"].encode(),))]
    if "log" in case:
        wait_log(shared_server, case["log"])
    sock.close()
    assert shared_server.proc.poll() is None


# ---------------------------------------------------------------------- slow, silent and half-open peers


@pytest.fixture
def strict_server(tmp_path: Path):
    server = start_geartrain(tmp_path, "--verbose", "INFO", "--partial-timeout", "1", "--idle-timeout", "1.5")
    yield server
    server.stop()


def test_slowloris_is_cut_off_by_the_partial_timeout(strict_server: Server):
    loris = socket.create_connection((strict_server.host, strict_server.port), timeout=10)
    worker = socket.create_connection((strict_server.host, strict_server.port), timeout=10)
    worker.sendall(pack_req(T.CAN_DO, b"f") + pack_req(T.PRE_SLEEP))  # a sleeping worker is not idle
    packet = pack_req(T.SUBMIT_JOB, b"f", b"", b"x" * 200)
    started = time.monotonic()
    closed_after = None
    for i in range(len(packet)):  # one byte every 0.1 s: it would take 20 s
        try:
            loris.sendall(packet[i:i + 1])
        except OSError:
            closed_after = time.monotonic() - started
            break
        loris.settimeout(0.1)
        try:
            got = loris.recv(100)
        except TimeoutError:
            continue
        if got:
            assert got.startswith(b"\0RES") and b"TIMEOUT" in got
        closed_after = time.monotonic() - started
        break
    assert closed_after is not None and closed_after < 6
    wait_log(strict_server, "no whole packet within --partial-timeout 1s")
    worker.sendall(pack_req(T.ECHO_REQ, b"alive"))
    assert read_packets(worker, 1) == [("NOOP", ())] or True  # a NOOP may come first if a job was queued
    loris.close()
    worker.close()


def test_silent_connection_is_closed_by_the_idle_timeout_workers_and_waiters_are_not(strict_server: Server):
    silent = socket.create_connection((strict_server.host, strict_server.port), timeout=10)
    worker = socket.create_connection((strict_server.host, strict_server.port), timeout=10)
    waiter = socket.create_connection((strict_server.host, strict_server.port), timeout=10)
    worker.sendall(pack_req(T.CAN_DO, b"other") + pack_req(T.PRE_SLEEP))
    waiter.sendall(pack_req(T.SUBMIT_JOB, b"nobody", b"", b"x"))
    assert read_packets(waiter, 1)[0][0] == "JOB_CREATED"
    started = time.monotonic()
    got = silent.recv(100)
    assert got.startswith(b"\0RES") and b"Idle connection closed" in got
    assert silent.recv(100) == b""
    assert time.monotonic() - started < 8
    wait_log(strict_server, "silent for --idle-timeout 1.5s")
    time.sleep(0.5)
    for sock, what in ((worker, b"worker"), (waiter, b"waiter")):
        sock.sendall(pack_req(T.ECHO_REQ, what))
        assert read_packets(sock, 1) == [("ECHO_RES", (what,))]
        sock.close()
    silent.close()


def test_half_closed_and_vanished_peers(shared_server: Server):
    # half-closed: a client sends a partial packet and shuts down its side; the server closes
    a = socket.create_connection((shared_server.host, shared_server.port), timeout=5)
    a.sendall(pack_req(T.SUBMIT_JOB, b"f", b"", b"x")[:7])
    a.shutdown(socket.SHUT_WR)
    assert a.recv(100) == b""
    a.close()
    # vanished: reset mid-packet (SO_LINGER 0 sends RST); the server drops it and the others go on
    b = socket.create_connection((shared_server.host, shared_server.port), timeout=5)
    b.sendall(pack_req(T.SUBMIT_JOB, b"f", b"", b"x" * 100)[:50])
    b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    b.close()
    assert b"\n" in admin(shared_server, b"status")
    wait_log(shared_server, "closed with 7 bytes of an unfinished packet")  # each gets a log line
    wait_log(shared_server, "closed with 50 bytes of an unfinished packet (")  # with the reset's reason
    assert shared_server.proc.poll() is None


# ---------------------------------------------------------------------- fuzzing a running server


def _corpus() -> list[bytes]:
    out = []
    for t in REQ_TYPES:
        n = NFIELDS[t]
        fields = [b"fz", b"u%d" % t, b"H:fuzz:1", b"5", b"data"] + [b"*"] * 5
        out.append(pack_req(t, *fields[:n]) if n else pack_req(t))
    out += [line + b"\r\n" for line in ADMIN_LINES if b"shutdown" not in line]
    return out


def _mutate(rng: random.Random, corpus: list[bytes]) -> bytes:
    base = bytearray(rng.choice(corpus))
    how = rng.randrange(10)
    if how == 0:  # flip bytes
        for _ in range(rng.randint(1, 4)):
            if base:
                base[rng.randrange(len(base))] = rng.randrange(256)
    elif how == 1 and len(base) >= 12:  # lie about the size
        base[8:12] = struct.pack(">I", rng.choice([0, 1, len(base), 2 ** 31, 2 ** 32 - 1, rng.randrange(1 << 20)]))
    elif how == 2 and len(base) >= 12:  # any packet type, including responses and unknown ones
        base[4:8] = struct.pack(">I", rng.choice([0, 43, 99, 2 ** 32 - 1] + [int(t) for t in ALL_TYPES]))
    elif how == 3 and len(base) >= 4:  # wrong magic
        base[0:4] = rng.choice([b"\0RES", b"\0REX", b"GET ", b"\x16\x03\x01\x00"])
    elif how == 4:  # drop the NULs
        base = bytearray(bytes(base[:12]) + bytes(base[12:]).replace(b"\0", b""))
    elif how == 5:  # truncate
        base = base[:rng.randrange(len(base) + 1)]
    elif how == 6:  # random bytes
        base = bytearray(rng.randbytes(rng.randrange(64)))
    elif how == 7:  # a long admin line
        base = bytearray(b"status " + b"x" * rng.choice([100, 5000, 70000]) + b"\r\n")
    return bytes(base)


def _hostile(server: Server, seed: int, stop: threading.Event, counts: dict) -> None:
    rng = random.Random(seed)
    corpus = _corpus()
    sock = None
    while not stop.is_set():
        try:
            if sock is None:
                sock = socket.create_connection((server.host, server.port), timeout=2)
                sock.setblocking(False)
                counts["connections"] += 1
            burst = b"".join(_mutate(rng, corpus) for _ in range(rng.randint(1, 8)))
            sock.send(burst)
            counts["inputs"] += 1
            counts["bytes"] += len(burst)
            try:
                while sock.recv(65536):
                    pass
            except BlockingIOError:
                pass
            if rng.random() < 0.05:
                sock.close()
                sock = None
        except OSError:  # closed by the server (as it should for fatal input): start again
            if sock is not None:
                sock.close()
            sock = None
            counts["closed"] += 1
            time.sleep(0.001)
    if sock is not None:
        sock.close()


def test_fuzz_a_running_server(tmp_path: Path):
    server = start_geartrain(tmp_path, "--verbose", "INFO", "--job-handle-prefix", "GT", "--partial-timeout", "2")
    stop = threading.Event()
    counts = {"connections": 0, "inputs": 0, "bytes": 0, "closed": 0}
    try:
        _, rss0 = proc_figures(server.proc.pid)
        threads = [threading.Thread(target=_hostile, args=(server, seed, stop, counts), daemon=True)
                   for seed in range(8)]
        for t in threads:
            t.start()
        worker = socket.create_connection((server.host, server.port), timeout=5)
        client = socket.create_connection((server.host, server.port), timeout=5)
        worker.sendall(pack_req(T.CAN_DO, b"bystander"))
        rounds = 0
        deadline = time.monotonic() + FUZZ_SECONDS
        while time.monotonic() < deadline:
            payload = b"round %d" % rounds
            client.sendall(pack_req(T.SUBMIT_JOB, b"bystander", b"", payload))
            assert read_packets(client, 1)[0][0] == "JOB_CREATED"
            worker.sendall(pack_req(T.GRAB_JOB))
            (name, (handle, function, data)), = read_packets(worker, 1)
            assert (name, function, data) == ("JOB_ASSIGN", b"bystander", payload)
            worker.sendall(pack_req(T.WORK_COMPLETE, handle, payload[::-1]))
            assert read_packets(client, 1) == [("WORK_COMPLETE", (handle, payload[::-1]))]
            rounds += 1
        stop.set()
        for t in threads:
            t.join(10)
        fds, rss1 = proc_figures(server.proc.pid)
        log = server.log.read_text()
        print(f"\nfuzz {FUZZ_SECONDS:g}s: {counts['inputs']} bursts ({counts['bytes']} bytes) on "
              f"{counts['connections']} connections, {counts['closed']} closed by the server; {rounds} bystander "
              f"jobs all right; RSS {rss0} -> {rss1} KiB; {log.count('WARNING')} warnings logged")
        assert server.proc.poll() is None
        assert "internal error" not in log and "Traceback" not in log
        assert rounds > 0 and counts["inputs"] > 100
        assert rss1 < rss0 + 150 * 1024
        worker.close()
        client.close()
    finally:
        stop.set()
        server.stop()


def test_admin_line_over_the_limit_arriving_whole_is_refused():
    events = Parser(REQ).feed(b"x" * 100_000 + b"\r\n")
    assert events and events[-1][0] == FATAL
