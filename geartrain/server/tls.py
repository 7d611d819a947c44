"""TLS for the job server, with gearmand's option names and default files.

gearmand (``--ssl --ssl-ca-file --ssl-certificate --ssl-key``) reads its CA, certificate and key from
``/etc/ssl/certs/gearmand-ca.pem``, ``gearmand.pem`` and ``gearmand.key`` unless told otherwise, and the
environment variables GEARMAND_CA_CERTIFICATE, GEARMAND_SERVER_PEM and GEARMAND_SERVER_KEY override the
defaults. It never asks clients for a certificate. We do the same by default, and add
``--ssl-verify-client optional|required``: ask for a client certificate, check it against the CA file,
and (required) refuse a client without one. The certificate's common name is what the ACL file's
``cert`` entries match.

The handshake runs in ``Connection`` (``loop.start_tls``) rather than in the listener, so that a failed
or too slow handshake is logged and bounded by ``--partial-timeout`` like any other stalled peer.
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





def describe_handshake_error(exc: BaseException) -> str:
    """A log-friendly reason for a failed handshake, with a hint for the common plain-TCP mistake."""
    if isinstance(exc, TimeoutError):
        return "no handshake within --partial-timeout (a stalled or plain-TCP peer)"
    text = str(exc) or type(exc).__name__
    reason = getattr(exc, "reason", None)
    if reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNKNOWN_PROTOCOL") or "wrong version" in text.lower():
        return f"{text} (the peer is not speaking TLS: a plain-TCP Gearman client on the --ssl port?)"
    return text

__all__ = ["TLSOptions", "TLSError", "server_context", "client_context", "peer_common_name", "VERIFY_MODES",
           "describe_handshake_error"]
