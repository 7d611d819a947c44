"""Is the server alive, and is it ready for work? The one answer behind ``GET /healthz`` and ``GET /readyz``
(http.py) and the admin commands ``health`` and ``ready`` (commands.py).

Live: the process answers (its event loop runs). Ready, every check passing:

* ``replayed``: the durable queue is replayed and the ports listen (the application sets it; before that
  nothing listens, so the answer is only seen by a caller of this module);
* ``accepting``: the server is not stopping (a graceful stop lets running jobs finish, but a load balancer
  should send no more work);
* ``store``: the durable store answers a cheap round trip (``Store.ping``) within ``timeout`` seconds;
* and whatever ``add_check`` adds (a name and an async function returning None when fine, else why not).

A probe is shared: callers that ask while one runs wait for it, and its report serves for ``fresh``
seconds, so load balancers asking often cost the database at most one query that often.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .store.base import MemoryStore, Store, StoreError

Check = Callable[[], Awaitable[str | None]]
OK = "ok"


@dataclass(frozen=True)
class Report:
    """The outcome of the checks: each check's name -> "ok" or why not."""

    ok: bool
    checks: dict[str, str]

    @property
    def reasons(self) -> list[str]:
        return [f"{name}: {why}" for name, why in self.checks.items() if why != OK]

    def as_json(self, kind: str) -> dict[str, Any]:
        """The HTTP body: ``{"status": "ok"|"not ready"|..., KIND: bool, "checks": {...}, "reasons": [...]}``."""
        return {"status": OK if self.ok else f"not {kind}", kind: self.ok, "checks": self.checks,
                "reasons": self.reasons}


class Health:
    """The server's liveness and readiness, for one store."""

    def __init__(self, store: Store, *, timeout: float = 2.0, fresh: float = 1.0) -> None:
        self.store = store
        self.timeout = timeout
        self.fresh = fresh
        self.replayed = False  # set by the application once the queue is replayed and the ports listen
        self.stopping = False  # set when a stop (graceful or not) begins
        self.checks: list[tuple[str, Check]] = [("store", self.probe_store)]
        self._last: tuple[float, Report] | None = None
        self._running: asyncio.Future[Report] | None = None
        self._tasks: set[asyncio.Future[Any]] = set()

    @classmethod
    def serving(cls) -> Health:
        """The health of a server without a durable store, serving (a ServerView's default)."""
        health = cls(MemoryStore())
        health.replayed = True
        return health

    def add_check(self, name: str, check: Check) -> None:
        """Another condition of readiness: CHECK returns None when it holds, else why not."""
        self.checks.append((name, check))

    def live(self) -> Report:
        return Report(True, {"process": OK})

    async def ready(self) -> Report:
        """Run (or join, or reuse a fresh) probe of every check."""
        if not self.replayed or self.stopping:
            return self._gate()
        last = self._last
        if last is not None and time.monotonic() - last[0] < self.fresh:
            return last[1]
        if self._running is None:
            self._running = asyncio.ensure_future(self._probe())
        running = self._running
        try:
            return await asyncio.shield(running)
        finally:
            if running.done() and self._running is running:
                self._running = None

    def ready_soon(self, answer: Callable[[Report], None]) -> None:
        """Run ready() on the running loop and give its report to ANSWER (for callers that cannot await)."""
        task = asyncio.ensure_future(self.ready())
        self._tasks.add(task)

        def done(task: asyncio.Future[Report]) -> None:
            self._tasks.discard(task)
            if not task.cancelled():
                answer(task.result())

        task.add_done_callback(done)

    def _gate(self) -> Report:
        checks = {"replayed": OK if self.replayed else "the queue is not replayed yet",
                  "accepting": "the server is stopping" if self.stopping else OK}
        return Report(False, checks)

    async def _probe(self) -> Report:
        names = [name for name, _ in self.checks]
        results = await asyncio.gather(*(self._one(check) for _, check in self.checks))
        if not self.replayed or self.stopping:  # changed while the probe ran
            return self._gate()
        checks = {"replayed": OK, "accepting": OK, **{n: why or OK for n, why in zip(names, results, strict=True)}}
        report = Report(all(why == OK for why in checks.values()), checks)
        self._last = (time.monotonic(), report)
        return report

    async def _one(self, check: Check) -> str | None:
        try:
            return await asyncio.wait_for(check(), self.timeout)
        except TimeoutError:
            return f"no answer within {self.timeout:g}s"
        except StoreError as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - a check that breaks says not ready, and why
            return f"{type(exc).__name__}: {exc}"

    async def probe_store(self) -> str | None:
        store = self.store
        if store.durable:
            await store.ping()
        return None


__all__ = ["Health", "Report"]
