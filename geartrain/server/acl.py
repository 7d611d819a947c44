"""Access control: who may register which functions, submit which jobs, and run state-changing admin commands.

Read from a TOML file (``geartrain serve --acl FILE``). Without one the server is open, as gearmand is,
and no check costs anything (``State.acl`` and ``Admin.allowed`` stay None). The file::

    # peers that match no [[peer]] entry; a key left out allows everything
    [default]
    can_do = []                 # function names (globs) a worker may register (CAN_DO, CAN_DO_TIMEOUT)
    submit = ["public.*"]       # function names (globs) a client may submit jobs to
    admin = false               # may run cancel, maxqueue, shutdown, create function, drop function, and set a
                                # policy or requeue and discard failed jobs

    [[peer]]                    # the first entry that matches a connection decides for it
    cert = ["worker-*"]         # TLS client certificate common names (globs); a peer without one never matches
    address = ["10.1.0.0/16"]   # source addresses or networks (plain TCP and TLS)
    can_do = ["resize", "thumb.*"]
    submit = []
    # admin not given: as [default]

An entry with both ``cert`` and ``address`` needs both to match. Keys an entry leaves out come from
``[default]``. Function names are matched as bytes against shell-style globs (``*``, ``?``, ``[...]``).
A connection's rules are chosen once, when it is made; each decision for a function name is then
cached on those rules. A denial is logged and answered with ERROR PERMISSION_DENIED (binary) or
``ERR PERMISSION_DENIED`` (admin text).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import logging
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("geartrain.server")

#: admin commands that change the server's state (the others only read it)
STATE_CHANGING = frozenset({b"cancel", b"maxqueue", b"shutdown", b"create", b"drop", b"policy", b"failed"})

#: the actions State asks about
ACTIONS = ("can_do", "submit")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ACLError(ValueError):
    """The ACL file cannot be used (the message says where and why)."""


class Globs:
    """A set of shell-style globs over bytes; ``None`` patterns mean 'everything'."""

    __slots__ = ("patterns", "regex", "everything")

    def __init__(self, patterns: Iterable[str] | None) -> None:
        self.patterns = None if patterns is None else list(patterns)
        self.everything = self.patterns is None or "*" in self.patterns
        if self.patterns:
            joined = "|".join(fnmatch.translate(p) for p in self.patterns)
            self.regex: re.Pattern[bytes] | None = re.compile(joined.encode("utf-8"), re.DOTALL)
        else:
            self.regex = None

    def match(self, name: bytes) -> bool:
        if self.everything:
            return True
        return self.regex is not None and self.regex.fullmatch(name) is not None

    def __repr__(self) -> str:
        return f"Globs({self.patterns!r})"


class Rules:
    """What one class of peers may do; ``allows(action, name)`` caches its answers."""

    __slots__ = ("label", "can_do", "submit", "admin", "cache")

    def __init__(self, label: str, can_do: Globs, submit: Globs, admin: bool) -> None:
        self.label = label
        self.can_do = can_do
        self.submit = submit
        self.admin = admin
        self.cache: dict[tuple[str, bytes], bool] = {}

    def allows(self, action: str, name: bytes) -> bool:
        key = (action, name)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        globs = self.can_do if action == "can_do" else self.submit
        ok = globs.match(name)
        if len(self.cache) < 65536:  # bounded: a client inventing names cannot grow it forever
            self.cache[key] = ok
        return ok


OPEN = Rules("open", Globs(None), Globs(None), True)


@dataclass
class Entry:
    """One [[peer]] table: how to recognise the peer, and its rules."""

    certs: Globs | None
    networks: list[IPNetwork] | None
    rules: Rules

    def matches(self, cert_name: str | None, address: str) -> bool:
        if self.certs is not None:
            if cert_name is None or not self.certs.match(cert_name.encode("utf-8", "surrogateescape")):
                return False
        if self.networks is not None:
            try:
                ip = ipaddress.ip_address(address.split("%", 1)[0])
            except ValueError:
                return False
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            if not any(ip in net for net in self.networks):
                return False
        return True


@dataclass
class ACL:
    """The parsed file: a default and an ordered list of entries."""

    default: Rules = field(default_factory=lambda: OPEN)
    entries: list[Entry] = field(default_factory=list)
    path: str = ""

    @property
    def uses_certificates(self) -> bool:
        return any(e.certs is not None for e in self.entries)

    def rules_for(self, cert_name: str | None, address: str) -> Rules:
        """The rules of a new connection from ADDRESS with client certificate CERT_NAME (None: no certificate)."""
        for entry in self.entries:
            if entry.matches(cert_name, address):
                return entry.rules
        return self.default

    def state_hook(self, peer: Any, action: str, name: bytes) -> bool:
        """``State.acl``: the connection's rules decide; a denial is logged.

        A peer whose connection chose no rules (an HTTP submission, say) is judged by its address.
        """
        rules = getattr(peer.extra, "rules", None)
        if rules is None:
            rules = self.rules_for(None, peer.host)
        if rules.allows(action, name):
            return True
        log.warning("permission denied: %s may not %s %r (ACL rules %s)", _describe(peer), action.replace("_", " "),
                    name, rules.label, extra={"event": "permission_denied", "function": name, "peer": peer.host,
                                              "fd": peer.fd, "action": action})
        return False


def _names(value: Any, where: str, key: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ACLError(f"{where}: {key} must be a string or a list of strings")
    return value


def _rules(table: dict, where: str, base: Rules | None) -> Rules:
    known = {"cert", "address", "can_do", "submit", "admin"} if base is not None else {"can_do", "submit", "admin"}
    for key in table:
        if key not in known:
            raise ACLError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(known))})")
    can_do = Globs(_names(table["can_do"], where, "can_do")) if "can_do" in table else None
    submit = Globs(_names(table["submit"], where, "submit")) if "submit" in table else None
    admin = table.get("admin")
    if admin is not None and not isinstance(admin, bool):
        raise ACLError(f"{where}: admin must be true or false")
    if base is None:
        return Rules("default", can_do or Globs(None), submit or Globs(None), True if admin is None else admin)
    return Rules(where, can_do or base.can_do, submit or base.submit, base.admin if admin is None else admin)


def parse(data: dict, path: str = "<acl>") -> ACL:
    """Build an ACL from a parsed TOML document."""
    for key in data:
        if key not in ("default", "peer"):
            raise ACLError(f"{path}: unknown top-level key {key!r} (known: default, peer)")
    default_table = data.get("default", {})
    if not isinstance(default_table, dict):
        raise ACLError(f"{path}: [default] must be a table")
    default = _rules(default_table, f"{path} [default]", None)
    entries = []
    peers = data.get("peer", [])
    if not isinstance(peers, list):
        raise ACLError(f"{path}: peer must be an array of tables ([[peer]])")
    for i, table in enumerate(peers, 1):
        where = f"{path} [[peer]] #{i}"
        if not isinstance(table, dict):
            raise ACLError(f"{where}: must be a table")
        if "cert" not in table and "address" not in table:
            raise ACLError(f"{where}: needs cert or address (or both)")
        certs = Globs(_names(table["cert"], where, "cert")) if "cert" in table else None
        networks = None
        if "address" in table:
            networks = []
            for text in _names(table["address"], where, "address"):
                try:
                    networks.append(ipaddress.ip_network(text, strict=False))
                except ValueError as exc:
                    raise ACLError(f"{where}: bad address {text!r}: {exc}") from None
        label = table.get("cert") or table.get("address")
        rules = _rules(table, f"peer {label}", default)
        entries.append(Entry(certs, networks, rules))
    return ACL(default, entries, path)


def load(path: str) -> ACL:
    """Read and check an ACL file; raises ACLError with the reason."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ACLError(f"cannot read ACL file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ACLError(f"{path}: not valid TOML: {exc}") from None
    return parse(data, path)


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False  # a Unix socket or unknown peer is not trusted as loopback
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _describe(peer: Any) -> str:
    name = getattr(peer.extra, "cert_name", None)
    who = f"{peer.host} fd {peer.fd}"
    return f"{who} (certificate {name!r})" if name else who


def admin_hook(loopback_only: bool) -> Any:
    """``Admin.allowed`` for the given settings: read-only commands pass; state-changing ones are checked."""

    def allowed(peer: Any, command: bytes) -> bool:
        if command not in STATE_CHANGING:
            return True
        if loopback_only and not is_loopback(peer.host):
            log.warning("permission denied: %s may not run admin command %r (--admin-loopback-only)",
                        _describe(peer), command.decode(errors="replace"))
            return False
        rules = getattr(peer.extra, "rules", None)
        if rules is not None and not rules.admin:
            log.warning("permission denied: %s may not run admin command %r (ACL rules %s)", _describe(peer),
                        command.decode(errors="replace"), rules.label)
            return False
        return True

    return allowed


__all__ = ["ACL", "ACLError", "Rules", "OPEN", "STATE_CHANGING", "load", "parse", "is_loopback", "admin_hook"]
