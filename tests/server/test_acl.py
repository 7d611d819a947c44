"""Access control (`--acl FILE`, `--admin-loopback-only`): the file, the decisions, and a running server.

The running-server tests tell peers apart by source address (127.0.0.1 and 127.0.0.2 are both
loopback on Linux; a socket bound to 127.0.0.2 connects from there) and by TLS client certificate.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from geartrain.client import Client
from geartrain.errors import ServerError
from geartrain.protocol.codec import pack_req
from geartrain.protocol.packets import T
from geartrain.server import acl as aclmod
from geartrain.server.acl import ACLError, is_loopback, load, parse
from geartrain.server.commands import Admin
from geartrain.worker import Worker
from tests.conftest import Server, start_geartrain
from tests.server.helpers import Harness
from tests.server.test_tls import Certs, make_certs, read_packets, tls_conn, wait_log

ACL_TEXT = """
[default]
can_do = []
submit = ["public.*"]
admin = false

[[peer]]
address = "127.0.0.2"
can_do = ["resize", "thumb.*"]
submit = ["*"]

[[peer]]
cert = "worker-*"
can_do = ["*"]

[[peer]]
cert = "admin"
address = "127.0.0.0/8"
admin = true
"""


def test_file_parses_and_first_matching_entry_decides():
    acl = parse(__import__("tomllib").loads(ACL_TEXT))
    default = acl.rules_for(None, "10.0.0.1")
    assert default is acl.default
    assert not default.allows("can_do", b"resize")
    assert default.allows("submit", b"public.echo")
    assert not default.allows("submit", b"private")
    assert not default.admin
    by_address = acl.rules_for(None, "127.0.0.2")
    assert by_address.allows("can_do", b"thumb.small") and by_address.allows("can_do", b"resize")
    assert not by_address.allows("can_do", b"resize2")
    assert by_address.allows("submit", b"anything\x00binary")
    assert not by_address.admin  # left out: from [default]
    worker = acl.rules_for("worker-7", "10.9.9.9")
    assert worker.allows("can_do", b"whatever") and not worker.allows("submit", b"private")
    assert acl.rules_for("admin", "127.0.0.1").admin
    assert not acl.rules_for("admin", "10.0.0.1").admin  # both cert and address must match
    assert acl.rules_for("worker-1", "::ffff:127.0.0.2").allows("can_do", b"resize")  # address entry comes first
    assert acl.uses_certificates


def test_empty_file_is_open():
    acl = parse({})
    rules = acl.rules_for(None, "192.0.2.1")
    assert rules.allows("can_do", b"x") and rules.allows("submit", b"y") and rules.admin


@pytest.mark.parametrize("text, message", [
    ("[default]\ncan_do = 3\n", "can_do must be"),
    ("[default]\nbogus = 1\n", "unknown key"),
    ("[[peer]]\ncan_do = ['x']\n", "needs cert or address"),
    ("[[peer]]\naddress = 'not-an-ip'\n", "bad address"),
    ("[[peer]]\naddress = '10.0.0.1'\nadmin = 'yes'\n", "admin must be"),
    ("peers = 1\n", "unknown top-level key"),
    ("[default\n", "not valid TOML"),
])
def test_bad_files_are_refused_with_the_reason(tmp_path: Path, text: str, message: str):
    path = tmp_path / "acl.toml"
    path.write_text(text)
    with pytest.raises(ACLError, match=message):
        load(str(path))


def test_missing_file(tmp_path: Path):
    with pytest.raises(ACLError, match="cannot read"):
        load(str(tmp_path / "none.toml"))


def test_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("127.0.0.2") and is_loopback("::1")
    assert is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("10.0.0.1") and not is_loopback("-") and not is_loopback("2001:db8::1")


def test_decisions_are_cached_but_bounded():
    rules = parse({"default": {"submit": ["a*"]}}).default
    for i in range(70000):
        rules.allows("submit", b"b%d" % i)
    assert len(rules.cache) == 65536


# ---------------------------------------------------------------------- the state machine's hooks


def _harness(text: str) -> tuple[Harness, aclmod.ACL]:
    h = Harness()
    acl = parse(__import__("tomllib").loads(text))
    h.state.acl = acl.state_hook
    return h, acl


def _peer(h: Harness, acl: aclmod.ACL, host: str, cert: str | None = None):
    peer = h.peer()
    peer.host = host
    peer.extra = SimpleNamespace(rules=acl.rules_for(cert, host), cert_name=cert)
    return peer


def test_state_denies_can_do_and_submit_with_permission_denied(caplog: pytest.LogCaptureFixture):
    h, acl = _harness(ACL_TEXT)
    stranger = _peer(h, acl, "10.0.0.1")
    h.send(stranger, T.CAN_DO, b"resize")
    assert h.got(stranger) == [("ERROR", (b"PERMISSION_DENIED", b"can_do not allowed"))]
    assert h.state.functions.get(b"resize") is None or h.state.functions[b"resize"].workers == 0
    h.send(stranger, T.SUBMIT_JOB, b"private", b"", b"data")
    h.send(stranger, T.SUBMIT_JOB_BG, b"private", b"", b"data")
    h.send(stranger, T.SUBMIT_JOB_EPOCH, b"private", b"", b"1", b"data")
    h.send(stranger, T.SUBMIT_JOB_SCHED, b"private", b"", b"*", b"*", b"*", b"*", b"*", b"data")
    h.send(stranger, T.SUBMIT_REDUCE_JOB, b"private", b"", b"r", b"", b"data")
    got = h.got(stranger)
    assert [name for name, _ in got] == ["ERROR"] * 5
    assert all(args[0] == b"PERMISSION_DENIED" for _, args in got)
    assert not h.state.jobs and not h.state.schedules
    assert "permission denied: 10.0.0.1" in caplog.text
    # what it may do still works
    assert h.submit(stranger, b"public.echo")
    worker = _peer(h, acl, "127.0.0.2")
    h.send(worker, T.CAN_DO_TIMEOUT, b"resize", b"5")
    h.send(worker, T.CAN_DO, b"forbidden")
    assert h.got(worker) == [("ERROR", (b"PERMISSION_DENIED", b"can_do not allowed"))]
    assert h.state.functions[b"resize"].workers == 1


def test_a_denied_submit_does_not_join_an_existing_job():
    h, acl = _harness(ACL_TEXT)
    allowed = _peer(h, acl, "127.0.0.2")
    handle = h.submit(allowed, b"secret", unique=b"u1")
    stranger = _peer(h, acl, "10.0.0.1")
    h.send(stranger, T.SUBMIT_JOB, b"secret", b"u1", b"")
    assert h.got(stranger) == [("ERROR", (b"PERMISSION_DENIED", b"submit not allowed"))]
    assert h.state.jobs[handle].clients == [allowed]


def test_admin_state_changing_commands(caplog: pytest.LogCaptureFixture):
    h, acl = _harness(ACL_TEXT)
    admin = Admin(h.state, version="v", verbose=lambda: "INFO", shutdown=lambda graceful: None)
    admin.allowed = aclmod.admin_hook(False)
    stranger = _peer(h, acl, "127.0.0.1")
    boss = _peer(h, acl, "127.0.0.1", cert="admin")
    for line in (b"maxqueue f 1", b"cancel job H:x:1", b"create function f", b"drop function f", b"shutdown"):
        admin.run(stranger, line)
        assert h.raw(stranger) == b"ERR PERMISSION_DENIED Permission+denied\r\n", line
    admin.run(stranger, b"status")
    assert h.raw(stranger) == b".\n"
    admin.run(boss, b"create function f")
    assert h.raw(boss) == b"OK\r\n"
    assert "may not run admin command 'maxqueue'" in caplog.text


def test_admin_loopback_only_without_acl():
    h = Harness()
    admin = Admin(h.state, version="v", verbose=lambda: "INFO", shutdown=lambda graceful: None)
    admin.allowed = aclmod.admin_hook(True)
    remote = h.peer()
    remote.host = "192.0.2.10"
    local = h.peer()
    local.host = "::1"
    admin.run(remote, b"maxqueue f 5")
    assert h.raw(remote) == b"ERR PERMISSION_DENIED Permission+denied\r\n"
    admin.run(remote, b"workers")
    assert h.raw(remote).endswith(b".\n")
    admin.run(local, b"maxqueue f 5")
    assert h.raw(local) == b"OK\r\n"


def test_no_acl_means_no_hook():
    h = Harness()
    assert h.state.acl is None


# ---------------------------------------------------------------------- a running server


def _connect_from(server: Server, source: str) -> socket.socket:
    sock = socket.socket()
    sock.settimeout(5)
    sock.bind((source, 0))
    sock.connect((server.host, server.port))
    return sock


@pytest.fixture
def acl_server(tmp_path: Path):
    path = tmp_path / "acl.toml"
    path.write_text(ACL_TEXT)
    server = start_geartrain(tmp_path, "--acl", str(path), "--verbose", "INFO")
    yield server
    server.stop()


def test_server_by_source_address(acl_server: Server):
    outsider = _connect_from(acl_server, "127.0.0.1")
    insider = _connect_from(acl_server, "127.0.0.2")
    outsider.sendall(pack_req(T.CAN_DO, b"resize") + pack_req(T.SUBMIT_JOB, b"secret", b"", b"x")
                     + pack_req(T.SUBMIT_JOB_BG, b"public.x", b"", b"y"))
    got = read_packets(outsider, 3)
    assert [n for n, _ in got] == ["ERROR", "ERROR", "JOB_CREATED"]
    assert got[0][1][0] == got[1][1][0] == b"PERMISSION_DENIED"
    outsider.sendall(b"maxqueue secret 3\r\n")
    assert outsider.recv(100) == b"ERR PERMISSION_DENIED Permission+denied\r\n"
    insider.sendall(pack_req(T.CAN_DO, b"resize") + pack_req(T.SUBMIT_JOB_BG, b"secret", b"", b"x")
                    + pack_req(T.ECHO_REQ, b"done"))
    assert [n for n, _ in read_packets(insider, 2)] == ["JOB_CREATED", "ECHO_RES"]
    log = wait_log(acl_server, "may not submit b'secret'")
    assert "may not can do b'resize'" in log and "may not run admin command 'maxqueue'" in log
    outsider.close()
    insider.close()


def test_our_client_sees_permission_denied(acl_server: Server):
    with Client(acl_server.address, timeout=5) as client:
        with pytest.raises(ServerError) as info:
            client.submit_background("secret", b"x")
        assert info.value.code == b"PERMISSION_DENIED"
        assert client.submit_background("public.ok", b"x").handle


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.getbasetemp() / "certs")


def test_server_by_client_certificate(tmp_path: Path, certs: Certs):
    path = tmp_path / "acl.toml"
    path.write_text(ACL_TEXT)
    server = start_geartrain(tmp_path, *certs.server_args("optional"), "--acl", str(path), "--verbose", "INFO")
    try:
        worker = Worker(server.address, ssl=certs.client("worker-1"))
        worker.register("anything", lambda job: b"ran " + job.data)
        thread = threading.Thread(target=worker.work, kwargs={"max_jobs": 1}, daemon=True)
        thread.start()
        with tls_conn(server, certs.client("client-1")) as client:
            client.sendall(pack_req(T.CAN_DO, b"anything") + pack_req(T.SUBMIT_JOB, b"anything", b"", b"x"))
            got = read_packets(client, 2)  # client-1 may register nothing and submit only public.*
            assert got == [("ERROR", (b"PERMISSION_DENIED", b"can_do not allowed")),
                           ("ERROR", (b"PERMISSION_DENIED", b"submit not allowed"))]
        with tls_conn(server, certs.client("admin")) as boss:
            boss.sendall(pack_req(T.SUBMIT_JOB, b"public.anything", b"", b"x") + b"maxqueue anything 9\r\n")
            data = b""
            while b"OK\r\n" not in data:
                data += boss.recv(1000)
            assert data.startswith(b"\0RES")
        with Client(server.address, ssl=certs.client("worker-1"), timeout=10) as client:
            with pytest.raises(ServerError):  # worker-* may register anything but submits only public.*
                client.submit("anything", b"x")
        with Client(server.address, ssl=certs.client("admin", check_hostname=True), timeout=10) as client:
            with pytest.raises(ServerError):
                client.submit("anything", b"x")
        log = wait_log(server, "(certificate 'client-1') may not can do b'anything'")
        assert "worker-1" in log
        worker.stop()
        thread.join(5)
    finally:
        server.stop()


def test_serve_refuses_a_bad_acl_file(tmp_path: Path):
    import subprocess
    import sys

    path = tmp_path / "acl.toml"
    path.write_text("[default]\ncan_do = 1\n")
    out = subprocess.run([sys.executable, "-m", "geartrain", "serve", "-p", "0", "--acl", str(path)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "can_do must be" in out.stderr


def test_peer_without_connection_rules_is_judged_by_its_address():
    """An HTTP submission has a Peer but no Connection rules: its address decides."""
    h, acl = _harness(ACL_TEXT)
    outsider = h.peer()
    outsider.host = "10.0.0.1"
    h.send(outsider, T.SUBMIT_JOB_BG, b"private", b"", b"x")
    assert h.got(outsider) == [("ERROR", (b"PERMISSION_DENIED", b"submit not allowed"))]
    insider = h.peer()
    insider.host = "127.0.0.2"
    assert h.submit(insider, b"private", ptype=T.SUBMIT_JOB_BG)


def test_server_wires_the_hooks_only_when_asked():
    from geartrain.server.app import Options
    from geartrain.server.app import Server as App

    plain = App(Options())
    assert plain.state.acl is None and plain.admin.allowed is None  # open: nothing to check, nothing paid
    strict = App(Options(admin_loopback_only=True))
    assert strict.state.acl is None
    remote = SimpleNamespace(host="192.0.2.7", fd=9, extra=None)
    assert not strict.admin.allowed(remote, b"shutdown")
    assert strict.admin.allowed(remote, b"status")
    assert strict.admin.allowed(SimpleNamespace(host="127.0.0.1", fd=9, extra=None), b"shutdown")
    acl = parse(__import__("tomllib").loads(ACL_TEXT))
    guarded = App(Options(acl=acl))
    assert guarded.state.acl == acl.state_hook and guarded.admin.allowed is not None
    assert not guarded.state.acl(SimpleNamespace(host="10.0.0.1", fd=9, extra=None), "can_do", b"resize")
