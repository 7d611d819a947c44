"""systemd's notification protocol (sd_notify), spoken when the server runs under a unit of ``Type=notify``.

``$NOTIFY_SOCKET`` names a unix datagram socket (a path, or ``@name`` in the abstract namespace); each
message is one datagram of ``KEY=VALUE`` lines. The server sends ``READY=1`` once its queue is replayed
and its ports listen, ``STATUS=`` lines while it waits for the queue's database (``systemctl status``
shows them), ``STOPPING=1`` when it begins to stop (gracefully or not), and, when ``$WATCHDOG_USEC`` is
set for this process (``WatchdogSec=``; ``$WATCHDOG_PID``, when set, must be ours), ``WATCHDOG=1`` every
half of that interval from the event loop: a loop that hangs stops the pings and systemd restarts the
service. Without ``$NOTIFY_SOCKET`` every call does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("geartrain.server")


class Notifier:
    """Messages to the service manager at ADDRESS (None: nobody listens, nothing is sent)."""

    def __init__(self, address: str | None = None, watchdog_usec: int = 0) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self.sock: socket.socket | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.failed = False  # a send failed (logged once)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ, pid: int | None = None) -> Notifier:
        """The notifier systemd's variables ask for (a disabled one without $NOTIFY_SOCKET)."""
        address = environ.get("NOTIFY_SOCKET") or None
        usec = 0
        owner = environ.get("WATCHDOG_PID")
        if not owner or owner == str(os.getpid() if pid is None else pid):
            try:
                usec = max(int(environ.get("WATCHDOG_USEC", "0")), 0)
            except ValueError:
                usec = 0
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """One datagram of LINES (``KEY=VALUE`` each); False if there is nobody to tell or it could not be sent."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self.sock is None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self.sock.sendto("\n".join(lines).encode("utf-8", "replace") + b"\n", target)
        except OSError as exc:
            if not self.failed:
                self.failed = True
                log.warning("cannot notify the service manager at %s: %s", self.address, exc.strerror or exc)
            return False
        return True

    def status(self, text: str) -> bool:
        return self.send(_status(text))

    def ready(self, text: str) -> bool:
        return self.send("READY=1", _status(text))

    def stopping(self, text: str) -> bool:
        return self.send("STOPPING=1", _status(text))

    # ------------------------------------------------------------------ the watchdog

    def start_watchdog(self, loop: asyncio.AbstractEventLoop) -> None:
        """Send WATCHDOG=1 now and every half of $WATCHDOG_USEC from LOOP (nothing when it is not set)."""
        if self.address is None or not self.watchdog_usec or self.timer is not None:
            return
        interval = self.watchdog_usec / 2e6

        def ping() -> None:
            self.send("WATCHDOG=1")
            self.timer = loop.call_later(interval, ping)

        ping()

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _status(text: str) -> str:
    return "STATUS=" + " ".join(text.split())  # one line


__all__ = ["Notifier"]
