"""What the HTTP side (http.py, api.py, metrics.py) may see and do of the running server.

Not the server itself: the State, a callback that schedules the flush of the state's output, the
permission hooks, the input cap, and a few facts and counters. The application (app.py) builds one
``ServerView`` and hands it down, so these modules import nothing above them and the layers read
bottom-up: jobs/state -> view -> api, metrics -> http -> app.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .budget import InputBudget
from .health import Health
from .jobs import Peer
from .state import State

Address = tuple[str, int]


@dataclass(eq=False)
class HttpStats:
    """The HTTP listener's addresses and counters (read by /api/server and /metrics)."""

    addresses: list[Address] = field(default_factory=list)
    bytes_in: int = 0
    bytes_out: int = 0
    #: bytes of Gearman replies the state wrote to HTTP submissions: the flush counts them as Gearman output
    relayed: int = 0
    responses: dict[int, int] = field(default_factory=dict)


@dataclass(eq=False)
class ServerView:
    """The narrow face of the server that the HTTP listener, the JSON API and the metrics are given."""

    state: State
    #: schedule one flush of the state's output (after the state was changed outside a Gearman read)
    flush: Callable[[], None]
    #: when the server started (Unix time), and the name of its queue
    started: float
    queue: str
    #: the Gearman listener's addresses, and its bytes in and out so far
    addresses: Callable[[], list[Address]]
    gearman_bytes: Callable[[], tuple[int, int]]
    #: admin permission hook (--acl, --admin-loopback-only): allowed(peer, command); None allows all
    admin_allowed: Callable[[Peer, bytes], bool] | None = None
    #: the ACL (acl.ACL) whose rules an HTTP request gets from its address; None: open
    acl: Any = None
    budget: InputBudget = field(default_factory=lambda: InputBudget(0))
    #: the HTTP listener's counters, set when it starts
    http: HttpStats | None = None
    #: liveness and readiness (GET /healthz, /readyz); by default, a server without a store, serving
    health: Health = field(default_factory=Health.serving)

    def traffic(self) -> list[tuple[str, int, int]]:
        """(listener, bytes in, bytes out) for the Gearman port and, if it runs, the HTTP one."""
        gearman_in, gearman_out = self.gearman_bytes()
        http = self.http
        if http is None:
            return [("gearman", gearman_in, gearman_out)]
        return [("gearman", gearman_in, gearman_out - http.relayed), ("http", http.bytes_in, http.bytes_out)]
