"""TLS for the job server, with gearmand's option names and default files.

gearmand (``--ssl --ssl-ca-file --ssl-certificate --ssl-key``) reads its CA, certificate and key from
``/etc/ssl/certs/gearmand-ca.pem``, ``gearmand.pem`` and ``gearmand.key`` unless told otherwise, and the
environment variables GEARMAND_CA_CERTIFICATE, GEARMAND_SERVER_PEM and GEARMAND_SERVER_KEY override the
defaults. It never asks clients for a certificate. We do the same by default, and add
``--ssl-verify-client optional|required``: ask for a client certificate, check it against the CA file,
and (required) refuse a client without one. The certificate's common name is what the ACL file's
``cert`` entries match.

The session runs in ``Connection`` over the plain socket (``TLSTransport``: an ``ssl.SSLObject`` on memory
BIOs) rather than in the listener, so that a failed handshake is logged with the peer's address and a
stalled one is bounded by ``--partial-timeout`` like any other unfinished packet.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Any

#: gearmand's compiled-in defaults (``$sysconfdir/ssl/certs``) and the variables that override them
DEFAULT_CA_FILE = "/etc/ssl/certs/gearmand-ca.pem"
DEFAULT_CERTIFICATE = "/etc/ssl/certs/gearmand.pem"
DEFAULT_KEY = "/etc/ssl/certs/gearmand.key"
ENV_CA_FILE = "GEARMAND_CA_CERTIFICATE"
ENV_CERTIFICATE = "GEARMAND_SERVER_PEM"
ENV_KEY = "GEARMAND_SERVER_KEY"

VERIFY_MODES = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


class TLSError(ValueError):
    """The TLS settings cannot be used (a file is missing or does not hold what it should)."""


@dataclass
class TLSOptions:
    """`geartrain serve`'s TLS settings; a None file means gearmand's default (or its environment variable)."""

    ca_file: str | None = None
    certificate: str | None = None
    key: str | None = None
    verify_client: str = "none"

    def resolved(self) -> tuple[str | None, str, str]:
        """The files to use: explicit options, else the environment, else gearmand's defaults.

        The CA file is optional when clients are not verified: a default that does not exist is skipped.
        """
        ca = self.ca_file or os.environ.get(ENV_CA_FILE) or None
        if ca is None and os.path.exists(DEFAULT_CA_FILE):
            ca = DEFAULT_CA_FILE
        cert = self.certificate or os.environ.get(ENV_CERTIFICATE) or DEFAULT_CERTIFICATE
        key = self.key or os.environ.get(ENV_KEY) or DEFAULT_KEY
        return ca, cert, key


def server_context(options: TLSOptions) -> ssl.SSLContext:
    """A server-side SSLContext from OPTIONS; raises TLSError with a plain reason."""
    if options.verify_client not in VERIFY_MODES:
        raise TLSError(f"--ssl-verify-client must be one of {', '.join(VERIFY_MODES)}")
    ca, cert, key = options.resolved()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    for what, path in (("certificate", cert), ("key", key)):
        if not os.path.exists(path):
            raise TLSError(f"TLS {what} file {path} does not exist (see --ssl-certificate/--ssl-key)")
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise TLSError(f"cannot load TLS certificate {cert} with key {key}: {exc}") from None
    if ca is not None:
        try:
            ctx.load_verify_locations(cafile=ca)
        except (ssl.SSLError, OSError) as exc:
            raise TLSError(f"cannot load TLS CA file {ca}: {exc}") from None
    mode = VERIFY_MODES[options.verify_client]
    if mode != ssl.CERT_NONE and ca is None:
        raise TLSError("--ssl-verify-client needs a CA file (--ssl-ca-file) to check client certificates against")
    ctx.verify_mode = mode
    return ctx


def client_context(ca_file: str | None = None, certificate: str | None = None, key: str | None = None,
                   *, check_hostname: bool = True) -> ssl.SSLContext:
    """A client-side SSLContext for geartrain's Client/Worker: trust CA_FILE (else the system's store),
    present CERTIFICATE/KEY when given."""
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.check_hostname = check_hostname
    if certificate:
        ctx.load_cert_chain(certificate, key)
    return ctx


def peer_common_name(peercert: Any) -> str | None:
    """The subject commonName of a certificate as ``SSLObject.getpeercert()`` returns it (None if absent)."""
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None





def describe_tls_error(exc: BaseException) -> str:
    """A log-friendly reason for a failed TLS session, with a hint for the common plain-TCP mistake."""
    text = str(exc) or type(exc).__name__
    reason = getattr(exc, "reason", None)
    if reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE") or \
            "wrong version" in text.lower():
        return f"{text} (the peer is not speaking TLS: a plain-TCP Gearman client on the --ssl port?)"
    return text


class TLSTransport:
    """A server-side TLS session over a plain asyncio transport, with the transport methods Connection uses.

    ``Connection.data_received`` hands each read to ``receive()`` and parses the plaintext it returns;
    ``write()`` encrypts. The TLS state lives in an ``ssl.SSLObject`` over two memory BIOs, so the
    handshake needs no Task and works the same on asyncio's loop and on uvloop; its failures are raised
    to the connection, which logs them with the peer's address.
    """

    __slots__ = ("raw", "incoming", "outgoing", "obj", "established", "fresh", "closed")

    def __init__(self, raw: Any, context: ssl.SSLContext) -> None:
        self.raw = raw
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.established = False  # handshake done
        self.fresh = False  # handshake done by the last receive(): the connection looks at the certificate once
        self.closed = False

    def receive(self, data: bytes) -> bytes | None:
        """Bytes from the socket -> plaintext (b"" while the handshake runs); None once the peer closed TLS.

        Raises ssl.SSLError for a failed handshake or a broken record.
        """
        self.incoming.write(data)
        obj = self.obj
        if not self.established:
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                self._send_pending()
                return b""
            except BaseException:
                self._send_pending()  # the alert, if any, tells the peer why
                raise
            self.established = self.fresh = True
        chunks = []
        try:
            while True:
                chunk = obj.read(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            self._send_pending()
            return None
        self._send_pending()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _send_pending(self) -> None:
        if self.outgoing.pending and not self.closed:
            self.raw.write(self.outgoing.read())

    def write(self, data: bytes) -> None:
        if not self.established or self.closed:
            return  # nothing can be sent before the handshake; the connection is being closed anyway
        view = memoryview(data)
        while view:
            n = self.obj.write(view)
            view = view[n:]
        self._send_pending()

    def close(self) -> None:
        if self.closed:
            return
        if self.established:
            try:
                self.obj.unwrap()
            except (ssl.SSLError, OSError):
                pass
            self._send_pending()
        self.closed = True
        self.raw.close()

    def abort(self) -> None:
        self.closed = True
        self.raw.abort()

    def is_closing(self) -> bool:
        return self.closed or self.raw.is_closing()

    def peer_name(self) -> str | None:
        """The common name of the client's certificate (None without one)."""
        return peer_common_name(self.obj.getpeercert())

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peercert":
            return self.obj.getpeercert()
        if name == "ssl_object":
            return self.obj
        if name == "cipher":
            return self.obj.cipher()
        return self.raw.get_extra_info(name, default)

    def get_write_buffer_size(self) -> int:
        return self.raw.get_write_buffer_size() + self.outgoing.pending

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.raw.set_write_buffer_limits(high=high, low=low)

    def pause_reading(self) -> None:
        self.raw.pause_reading()

    def resume_reading(self) -> None:
        self.raw.resume_reading()


__all__ = ["TLSOptions", "TLSError", "TLSTransport", "server_context", "client_context", "peer_common_name",
           "VERIFY_MODES", "describe_tls_error"]
