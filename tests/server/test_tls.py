"""TLS on the Gearman port (`geartrain serve --ssl`): our Client and Worker, client certificates, failures.

Certificates are made for each test session with the openssl command line: a CA, a server
certificate for 127.0.0.1/localhost, client certificates (CN worker-1, client-1, admin) and one from
another CA. ``make_certs`` is shared with test_acl.py and interop/test_tls_peers.py.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from geartrain.client import Client
from geartrain.errors import NoServerAvailable
from geartrain.protocol.codec import Parser, pack_req
from geartrain.protocol.packets import RES, T
from geartrain.server.tls import TLSError, TLSOptions, client_context, server_context
from geartrain.worker import Worker
from tests.conftest import Server, start_geartrain


@dataclass
class Certs:
    dir: Path

    def path(self, name: str) -> str:
        return str(self.dir / name)

    @property
    def ca(self) -> str:
        return self.path("ca.pem")

    def server_args(self, verify: str = "none") -> list[str]:
        return ["--ssl", "--ssl-ca-file", self.ca, "--ssl-certificate", self.path("server.pem"),
                "--ssl-key", self.path("server.key"), "--ssl-verify-client", verify]

    def client(self, name: str | None = "client-1", *, check_hostname: bool = True) -> ssl.SSLContext:
        """A client context trusting our CA, presenting NAME's certificate (None: no certificate)."""
        if name is None:
            return client_context(self.ca, check_hostname=check_hostname)
        return client_context(self.ca, self.path(f"{name}.pem"), self.path(f"{name}.key"),
                              check_hostname=check_hostname)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(where: Path) -> Certs:
    """CA, server and client certificates under WHERE (made once per directory)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    where.mkdir(parents=True, exist_ok=True)
    if (where / "done").exists():
        return Certs(where)
    for ca in ("ca", "otherca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
                 "-days", "3", "-subj", f"/CN=geartrain test {ca}", cwd=where)
    (where / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    names = [("server", "ca", "localhost"), ("worker-1", "ca", "worker-1"), ("client-1", "ca", "client-1"),
             ("admin", "ca", "admin"), ("rogue", "otherca", "worker-1")]
    for name, ca, cn in names:
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={cn}", cwd=where)
        extra = ["-extfile", "server.ext"] if name == "server" else []
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "3", *extra, cwd=where)
    (where / "done").write_text("ok\n")
    return Certs(where)


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.getbasetemp() / "certs")


def tls_conn(server: Server, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection((server.host, server.port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def read_packets(sock: socket.socket, n: int, timeout: float = 5.0) -> list[tuple[str, tuple[bytes, ...]]]:
    parser = Parser(RES, text=False)
    got: list[tuple[str, tuple[bytes, ...]]] = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = sock.recv(65536)
        if not data:
            break
        got += [(T(t).name, a) for t, a in parser.feed(data)]
    return got


def wait_log(server: Server, text: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = server.log.read_text() if server.log.exists() else ""
        if text in log:
            return log
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the log:\n{server.log.read_text() if server.log.exists() else ''}")


@pytest.fixture
def tls_server(tmp_path: Path, certs: Certs):
    server = start_geartrain(tmp_path, *certs.server_args("optional"), "--verbose", "INFO")
    yield server
    server.stop()


def test_client_and_worker_run_a_job_over_tls(tls_server: Server, certs: Certs):
    worker = Worker(tls_server.address, ssl=certs.client("worker-1"))
    worker.register("reverse", lambda job: job.data[::-1])
    thread = threading.Thread(target=worker.work, kwargs={"max_jobs": 3}, daemon=True)
    thread.start()
    with Client(tls_server.address, ssl=certs.client("client-1"), timeout=10) as client:
        assert client.submit("reverse", b"abc") == b"cba"
        big = bytes(range(256)) * 4096  # 1 MiB through TLS records both ways
        assert client.submit("reverse", big) == big[::-1]
        assert client.submit("reverse", b"") == b""
    thread.join(10)
    assert not thread.is_alive()
    assert worker.jobs_done == 3


def test_client_without_certificate_is_accepted_when_optional(tls_server: Server, certs: Certs):
    with Client(tls_server.address, ssl=certs.client(None), timeout=5) as client:
        assert client.echo(b"no cert") == b"no cert"


def test_admin_protocol_over_tls(tls_server: Server, certs: Certs):
    with tls_conn(tls_server, certs.client("admin")) as sock:
        sock.sendall(b"version\r\n")
        sock.settimeout(5)
        assert sock.recv(100).startswith(b"OK geartrain-")


def test_plain_client_on_tls_port_is_closed_and_logged_others_unaffected(tls_server: Server, certs: Certs):
    good = tls_conn(tls_server, certs.client("client-1"))
    plain = socket.create_connection((tls_server.host, tls_server.port), timeout=5)
    plain.sendall(pack_req(T.ECHO_REQ, b"hello"))
    assert plain.recv(100) == b""  # closed, nothing sent in clear
    plain.close()
    wait_log(tls_server, "the peer is not speaking TLS")
    good.sendall(pack_req(T.ECHO_REQ, b"still here"))
    assert read_packets(good, 1) == [("ECHO_RES", (b"still here",))]
    good.close()


def test_certificate_from_another_ca_is_refused(tls_server: Server, certs: Certs):
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with tls_conn(tls_server, certs.client("rogue")) as sock:
            sock.sendall(pack_req(T.ECHO_REQ, b"x"))
            if not sock.recv(100):
                raise ConnectionResetError("closed")
    wait_log(tls_server, "TLS handshake with 127.0.0.1")


def test_required_client_certificate(tmp_path: Path, certs: Certs):
    server = start_geartrain(tmp_path, *certs.server_args("required"), "--verbose", "INFO")
    try:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            with tls_conn(server, certs.client(None)) as sock:
                sock.sendall(pack_req(T.ECHO_REQ, b"x"))
                if not sock.recv(100):  # TLS 1.3: the refusal arrives after our handshake finished
                    raise ConnectionResetError("closed")
        wait_log(server, "TLS handshake with 127.0.0.1")
        with tls_conn(server, certs.client("worker-1")) as sock:
            sock.sendall(pack_req(T.ECHO_REQ, b"with cert"))
            assert read_packets(sock, 1) == [("ECHO_RES", (b"with cert",))]
    finally:
        server.stop()


def test_stalled_handshake_is_closed_after_partial_timeout(tmp_path: Path, certs: Certs):
    server = start_geartrain(tmp_path, *certs.server_args(), "--partial-timeout", "0.5")
    try:
        sock = socket.create_connection((server.host, server.port), timeout=5)
        sock.sendall(b"\x16\x03\x01")  # the first bytes of a ClientHello, then nothing
        started = time.monotonic()
        assert sock.recv(100) == b""
        assert time.monotonic() - started < 4.5
        wait_log(server, "a TLS handshake not finished")
    finally:
        server.stop()


def test_client_checks_the_server_certificate(tls_server: Server, certs: Certs, tmp_path: Path):
    # a client trusting only the other CA must refuse our server
    other = ssl.create_default_context(cafile=certs.path("otherca.pem"))
    client = Client(tls_server.address, ssl=other, wait_for_server=0.5, connect_timeout=2)
    try:
        with pytest.raises((NoServerAvailable, ssl.SSLCertVerificationError)):
            client.echo(b"x")
    finally:
        client.close()


def test_server_context_reports_missing_files(tmp_path: Path, certs: Certs):
    with pytest.raises(TLSError, match="does not exist"):
        server_context(TLSOptions(certificate=str(tmp_path / "nope.pem"), key=str(tmp_path / "nope.key")))
    with pytest.raises(TLSError, match="needs a CA file"):
        server_context(TLSOptions(certificate=certs.path("server.pem"), key=certs.path("server.key"),
                                  verify_client="required"))
    ctx = server_context(TLSOptions(certs.ca, certs.path("server.pem"), certs.path("server.key"), "optional"))
    assert ctx.verify_mode == ssl.CERT_OPTIONAL


def test_gearmand_environment_variables_name_the_files(monkeypatch: pytest.MonkeyPatch, certs: Certs):
    monkeypatch.setenv("GEARMAND_CA_CERTIFICATE", certs.ca)
    monkeypatch.setenv("GEARMAND_SERVER_PEM", certs.path("server.pem"))
    monkeypatch.setenv("GEARMAND_SERVER_KEY", certs.path("server.key"))
    assert TLSOptions().resolved() == (certs.ca, certs.path("server.pem"), certs.path("server.key"))
    assert server_context(TLSOptions(verify_client="required")).verify_mode == ssl.CERT_REQUIRED


def test_serve_refuses_to_start_with_a_bad_certificate(tmp_path: Path):
    import sys

    out = subprocess.run([sys.executable, "-m", "geartrain", "serve", "-p", "0", "--ssl", "--ssl-certificate",
                          str(tmp_path / "missing.pem"), "--ssl-key", str(tmp_path / "missing.key")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "missing.pem does not exist" in out.stderr


def test_garbage_on_the_tls_port(tls_server: Server, certs: Certs):
    """Random bytes, mutated handshakes and resets on the TLS port: each is refused, none hurts a TLS peer."""
    import random

    rng = random.Random(7)
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32)
    with tls_conn(tls_server, certs.client("client-1")) as good:
        for i in range(200):
            sock = socket.create_connection((tls_server.host, tls_server.port), timeout=5)
            kind = i % 4
            if kind == 0:
                data = rng.randbytes(rng.randrange(1, 600))
            elif kind == 1:
                data = bytearray(hello + rng.randbytes(200))
                data[rng.randrange(len(data))] ^= 0xFF
            elif kind == 2:
                data = hello[: rng.randrange(1, len(hello))]
            else:
                data = b"\x15\x03\x03\x00\x02\x02\x28"  # an alert instead of a hello
            try:
                sock.sendall(bytes(data))
                if kind == 2:  # vanish mid-handshake with a reset
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass
            sock.close()
            if i % 50 == 0:
                good.sendall(pack_req(T.ECHO_REQ, b"%d" % i))
                assert read_packets(good, 1) == [("ECHO_RES", (b"%d" % i,))]
    log = wait_log(tls_server, "TLS handshake with 127.0.0.1")
    assert "Traceback" not in log and "internal error" not in log
    assert tls_server.proc.poll() is None


class _Raw:
    """A stand-in for the socket transport under TLSTransport: records what is written."""

    def __init__(self) -> None:
        self.out = b""
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.out += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


def test_tls_transport_without_sockets(certs: Certs):
    from geartrain.server.tls import TLSTransport

    raw = _Raw()
    server = TLSTransport(raw, server_context(TLSOptions(certs.ca, certs.path("server.pem"), certs.path("server.key"),
                                                         "required")))
    cin, cout = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = certs.client("worker-1").wrap_bio(cin, cout, server_hostname="localhost")
    server.write(b"too early")  # nothing may leave before the handshake
    assert raw.out == b""
    for _ in range(10):  # drive the handshake by hand
        try:
            client.do_handshake()
            break
        except ssl.SSLWantReadError:
            pass
        assert server.receive(cout.read()) == b""
        cin.write(raw.out)
        raw.out = b""
    assert server.receive(cout.read()) == b""  # the client's last flight (TLS 1.3: its Finished)
    assert server.established and server.fresh and server.peer_name() == "worker-1"
    client.write(pack_req(T.ECHO_REQ, b"hi"))
    assert server.receive(cout.read()) == pack_req(T.ECHO_REQ, b"hi")
    server.write(b"x" * 100_000)  # several records
    cin.write(raw.out)
    raw.out = b""
    got = b""
    while len(got) < 100_000:
        got += client.read(65536)
    assert got == b"x" * 100_000
    server.close()
    assert raw.closed and raw.out  # a close_notify went out before the socket closed
    cin.write(raw.out)
    assert client.read(10) == b""  # a clean TLS close, not a truncation


def test_tls_transport_refuses_plain_bytes(certs: Certs):
    from geartrain.server.tls import TLSTransport, describe_tls_error

    server = TLSTransport(_Raw(), server_context(TLSOptions(None, certs.path("server.pem"), certs.path("server.key"))))
    with pytest.raises(ssl.SSLError) as info:
        server.receive(pack_req(T.ECHO_REQ, b"plain"))
    assert "not speaking TLS" in describe_tls_error(info.value)
    assert not server.established
