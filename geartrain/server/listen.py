"""Listening sockets: bound before the durable queue is opened, listening only once it is replayed.

A port that is taken must stop the start at once, naming the address that failed, before the
queue's file or tables are touched; and no connection may be accepted before the replay is done.
So the server binds every socket first (a bound socket that does not listen refuses connections)
and calls listen() after the replay. The sockets are made here rather than by the event loop:
uvloop (libuv) reports EADDRINUSE from listen(), not from bind().
"""

from __future__ import annotations

import socket


class ListenError(Exception):
    """A socket could not be bound or could not listen; the message names the address and the port's role."""


def system_backlog() -> int:
    """The largest listen backlog this system grants (Linux: net.core.somaxconn, to which it caps any
    larger value). gearmand asks for 32, which makes a crowd of workers reconnecting at once after a
    restart wait for SYN retransmits (a second each); the listen queue costs the kernel nothing until used."""
    try:
        with open("/proc/sys/net/core/somaxconn") as fh:
            return max(int(fh.read()), 1)
    except (OSError, ValueError):
        return socket.SOMAXCONN


def where(host: str | None, port: int) -> str:
    """HOST:PORT as a person writes it ([::1]:4730 for IPv6; all interfaces when HOST is empty)."""
    host = host or "*"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind(host: str | None, port: int, role: str) -> list[socket.socket]:
    """Sockets bound to every address HOST resolves to (all interfaces when empty), not listening yet.

    ROLE (e.g. "Gearman", "HTTP") goes in the error, which says which address failed."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {where(host, port)} ({role}): {exc.strerror}") from None
    sockets: list[socket.socket] = []
    try:
        for family, type_, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, type_, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise ListenError(f"cannot listen on {where(address[0], address[1])} ({role}): "
                                  f"{exc.strerror or exc}") from None
    except BaseException:
        close(sockets)
        raise
    return sockets


def close(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()
