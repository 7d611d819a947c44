"""JSON views of the server's state for the HTTP API (dashboard/openapi.json describes every shape).

Plain functions from State records to dicts of JSON types; nothing here changes the state except
``cancel_job``. They are given the State (and, for ``server_info``, the ServerView), never the
server. Names, uniques and handles are bytes: each is given as ``name`` (UTF-8, invalid bytes
replaced by U+FFFD, for people) and ``name_url`` (the exact bytes percent-encoded, to put in a URL
such as /api/jobs/{handle}).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any
from urllib.parse import quote

from .. import __version__
from ..protocol.packets import HIGH, LOW, NORMAL
from .commands import last_error
from .jobs import DELAYED, PENDING, QUEUED, RUNNING, STATE_NAMES, Function, Job, Peer
from .state import State
from .view import ServerView

PRIORITY_NAMES = {HIGH: "high", NORMAL: "normal", LOW: "low"}
#: job states a listing can be filtered on
JOB_STATES = {"queued": QUEUED, "running": RUNNING, "delayed": DELAYED, "pending": PENDING}
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000


class ApiError(Exception):
    """A request the API refuses: HTTP status and a message for the JSON error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def query_limit(query: dict[str, str]) -> int:
    """The ``limit`` parameter of a listing (DEFAULT_LIMIT when absent); ApiError 400 unless 1..MAX_LIMIT."""
    if "limit" not in query:
        return DEFAULT_LIMIT
    try:
        limit = int(query["limit"])
    except ValueError:
        raise ApiError(400, "limit must be an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def url(value: bytes) -> str:
    return quote(value, safe="")


def _per_priority(values: list[int]) -> dict[str, int]:
    return {"high": values[HIGH], "normal": values[NORMAL], "low": values[LOW]}


def function_view(f: Function) -> dict[str, Any]:
    q = f.queued
    return {
        "name": text(f.name),
        "name_url": url(f.name),
        "total": f.total,
        "queued": _per_priority(q),
        "waiting": f.total - f.running,
        "delayed": sum(f.delayed),
        "running": f.running,
        "workers": f.workers,
        "max_queue": _per_priority(f.maxqueue),
        "counters": {
            "submitted": f.submitted,
            "completed": f.completed,
            "failed": f.failed,
            "exceptions": f.exceptions,
            "retried": f.retried,
            "timeouts": f.timeouts,
            "buried": f.buried,
        },
    }


def functions(state: State) -> list[dict[str, Any]]:
    """Every function, by name."""
    return [function_view(f) for f in sorted(state.functions.values(), key=lambda f: f.name)]


def function(state: State, name: bytes) -> dict[str, Any]:
    f = state.functions.get(name)
    if f is None:
        raise ApiError(404, f"no function {text(name)!r}")
    return function_view(f)


def _when(value: float) -> float | None:
    return round(value, 6) if value else None


def error_line(attempt: Any) -> str:
    """How a try (store.base.Try) failed, in one line, as the admin command ``result`` says it."""
    return text(last_error(attempt))


def job_view(job: Job) -> dict[str, Any]:
    worker = job.worker
    history = job.history  # its failed tries under a retry policy (None: none failed)
    return {
        "handle": text(job.handle),
        "handle_url": url(job.handle),
        "function": text(job.function.name),
        "function_url": url(job.function.name),
        "unique": text(job.unique),
        "state": STATE_NAMES[job.state],
        "priority": PRIORITY_NAMES.get(job.priority, "normal"),
        "background": job.background,
        "size": len(job.data),
        "clients": len(job.clients),
        "retries": job.retries,
        "worker": worker.id if worker is not None else None,
        "numerator": _int(job.numerator),
        "denominator": _int(job.denominator),
        "when": None if history else job.when or None,  # after a failed try, its run-at time is the next try's
        "queued_at": _when(job.queued_at),
        "started_at": _when(job.started_at) if job.state == RUNNING else None,
        "tries": 1 + len(history) if history else 1,
        "error": error_line(history[-1]) if history else None,
        "next_try": round(job.when, 6) if history and job.state == DELAYED else None,
    }


def _int(value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


def jobs(state: State, query: dict[str, str]) -> dict[str, Any]:
    """Jobs in the server, oldest first, filtered by ``function`` and ``state``, at most ``limit``."""
    want_state = None
    if "state" in query:
        want_state = JOB_STATES.get(query["state"])
        if want_state is None:
            raise ApiError(400, f"state must be one of {', '.join(JOB_STATES)}")
    limit = query_limit(query)
    candidates: Iterator[Job] = iter(state.jobs.values())
    if "function" in query:
        f = state.functions.get(query["function"].encode("utf-8", "surrogateescape"))
        if f is None:
            return {"jobs": [], "more": False}
        candidates = (job for job in candidates if job.function is f)
    live = (QUEUED, RUNNING, DELAYED, PENDING)
    if want_state is not None:
        selected = (job for job in candidates if job.state == want_state)
    else:
        selected = (job for job in candidates if job.state in live)
    page = list(islice(selected, limit + 1))
    return {"jobs": [job_view(job) for job in page[:limit]], "more": len(page) > limit}


def cancel_job(state: State, handle: bytes, flush: Callable[[], None]) -> dict[str, Any]:
    """Cancel a job that is not running yet (its clients get WORK_FAIL), as admin `cancel job`; FLUSH sends
    the WORK_FAIL."""
    found = state.jobs.get(handle)
    if found is None or found.state not in (QUEUED, RUNNING, DELAYED, PENDING):
        raise ApiError(404, f"no job {text(handle)!r}")
    if found.state in (RUNNING, PENDING):
        raise ApiError(409, f"job {text(handle)!r} is {STATE_NAMES[found.state]}: only a queued job can be cancelled")
    view = job_view(found)
    if not state.cancel(handle):  # pragma: no cover - checked above
        raise ApiError(409, f"job {text(handle)!r} could not be cancelled")
    flush()
    view["state"] = "cancelled"
    return view


def worker_view(peer: Peer) -> dict[str, Any]:
    return {
        "id": peer.id,
        "fd": peer.fd,
        "host": peer.host,
        "client_id": text(peer.client_id),
        "functions": [text(f.name) for f in peer.as_worker.funcs],
        "running": [text(handle) for handle in peer.as_worker.jobs],
        "sleeping": peer.as_worker.sleeping,
        "ran": _ran(peer),
    }


def _ran(peer: Peer) -> dict[str, int]:
    """How a worker's runs ended: completed, failed (WORK_FAIL or WORK_EXCEPTION), taken back (it left or timed out)."""
    taken_back, completed, failed = peer.as_worker.ran
    return {"completed": completed, "failed": failed, "taken_back": taken_back}


def workers(state: State) -> list[dict[str, Any]]:
    """Connections that registered a function or run a job, oldest first."""
    return [worker_view(p) for p in state.peers.values() if p.as_worker.funcs or p.as_worker.jobs]


def server_info(view: ServerView, now: float) -> dict[str, Any]:
    state = view.state
    http = view.http
    traffic = view.traffic()
    failed, kept = state.life.failed_jobs, state.life.kept
    return {
        "version": __version__,
        "pid": os.getpid(),
        "started": round(view.started, 3),
        "uptime": round(max(now - view.started, 0.0), 3),
        "handle_prefix": text(state.prefix[:-1]),
        "listen": [f"{h}:{p}" for h, p in view.addresses()],
        "http": [f"{h}:{p}" for h, p in http.addresses] if http is not None else [],
        "queue": view.queue,
        "connections": len(state.peers),
        "connections_total": state.next_peer_id,
        "functions": len(state.functions),
        "workers": sum(1 for p in state.peers.values() if p.as_worker.funcs),
        "jobs": len(state.jobs),
        "draining": state.draining,
        "counters": {
            "submitted": state.submitted,
            "completed": state.completed,
            "failed": state.failed,
            "exceptions": state.exceptions,
            "retried": state.retried,
            "timeouts": state.timed_out,
            "dropped": state.dropped,
            "buried": state.buried,
        },
        "bytes_in": traffic[0][1],
        "bytes_out": traffic[0][2],
        "failed_registry": {"size": len(failed), "added": failed.added, "dropped": failed.dropped},
        "kept_results": {"count": len(kept), "bytes": kept.bytes, "evicted": kept.evicted, "expired": kept.expired},
    }
