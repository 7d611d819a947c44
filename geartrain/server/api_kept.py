"""JSON views of what the server keeps of jobs beyond their run, for the HTTP API (dashboard/openapi.json
describes every shape): a job's outcome by handle or unique, the functions' policies, the failed-job registry,
and the jobs that ended lately.

Plain functions over the State, as api.py's; the ones that change something (``put_policy``, ``drop_policy``,
``requeue``, ``discard``) are called by http.py once it has checked the admin permission the matching admin
command needs. Bytes (names, uniques, handles, payloads, results) come as api.py gives them: text for people
(invalid UTF-8 replaced) and ``*_url`` percent-encoded; payloads and results as base64, and also as text when
they are UTF-8.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from itertools import islice
from typing import Any

from .api import PRIORITY_NAMES, ApiError, error_line, job_view, query_limit, text, url
from .jobs import Peer
from .lifecycle import Lifecycle
from .policy import WORDS, Policy, PolicyError
from .policy import parse as policy_parse
from .state import State
from .store.base import FailedJob, KeptResult, Try

#: the outcomes a job that ended may have (jobs.STATE_NAMES are those of jobs still in the server)
OUTCOMES = ("complete", "failed", "exception")


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ---------------------------------------------------------------------- a job's outcome


def ended_view(kept: KeptResult) -> dict[str, Any]:
    """A job that ended, from its kept outcome."""
    complete = kept.outcome == "complete"
    error = None
    if kept.outcome == "exception":
        error = text(kept.data)
    elif kept.outcome == "failed":
        error = "job failed"
    return {
        "handle": text(kept.handle),
        "handle_url": url(kept.handle),
        "function": text(kept.function),
        "function_url": url(kept.function),
        "unique": text(kept.unique),
        "state": kept.outcome,
        "tries": kept.tries,
        "ended_at": round(kept.ended, 6),
        "expires_at": round(kept.expires, 6),
        "size": len(kept.data) if complete else 0,
        "result": _b64(kept.data) if complete else None,
        "result_text": _utf8(kept.data) if complete else None,
        "error": error,
    }


def outcome(state: State, key: bytes) -> dict[str, Any]:
    """GET /api/jobs/{key}: the job with handle (else unique) KEY while the server holds it, else how it ended if
    its outcome is kept (the admin command ``result`` looks it up the same way)."""
    name, job, kept = state.outcome(key)
    if job is not None:
        return job_view(job)
    if kept is not None:
        return ended_view(kept)
    raise ApiError(404, f"no job {text(key)!r} (a job that ended is known only while its outcome is kept: a "
                   "policy with keep=SECONDS)")


# ---------------------------------------------------------------------- policies


def _settings(policy: Policy) -> dict[str, Any]:
    return {name: getattr(policy, name) for name in WORDS}


def _policy_of(policy: Policy | None) -> dict[str, Any] | None:
    return None if policy is None else {"words": policy.text(), "settings": _settings(policy)}


def policy_view(life: Lifecycle, name: bytes) -> dict[str, Any]:
    """A function's own policy (null: none of its own) and the one in effect (its own, else the server's)."""
    f = life.functions.get(name)
    own = f.policy if f is not None else None
    effective = own if own is not None else life.default_policy
    return {"function": text(name), "function_url": url(name), "own": _policy_of(own),
            "effective": _policy_of(effective)}


def policies(life: Lifecycle) -> dict[str, Any]:
    """GET /api/policies: the server's default policy and every function's own, by name."""
    own = sorted((f for f in life.functions.values() if f.policy is not None), key=lambda f: f.name)
    return {"default": _policy_of(life.default_policy), "functions": [policy_view(life, f.name) for f in own]}


def policy_words(body: bytes, json_body: bool) -> str:
    """A PUT body as policy words: the words themselves, or a JSON object of name: value."""
    if not json_body:
        words = _utf8(body)
        if words is None:
            raise ApiError(400, "a policy is UTF-8 text: words name=value")
        return words
    try:
        fields = json.loads(body)
    except ValueError as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise ApiError(400, "a policy in JSON is an object of name: value (" + ", ".join(WORDS) + ")")
    words = []
    for name, value in fields.items():
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif not isinstance(value, (int, float, str)):
            raise ApiError(400, f"bad value for {name}: {json.dumps(value)} (a number, a string or true/false)")
        words.append(f"{name}={value}")
    return " ".join(words)


def put_policy(life: Lifecycle, name: bytes, words: str) -> dict[str, Any]:
    """PUT /api/functions/{name}/policy: the function's own policy, WORDS laid over the server's default."""
    try:
        policy = policy_parse(words, life.default_policy)
    except PolicyError as exc:
        raise ApiError(400, str(exc)) from None
    life.set_policy(life.function(name), policy)
    return policy_view(life, name)


def drop_policy(life: Lifecycle, name: bytes) -> dict[str, Any]:
    """DELETE /api/functions/{name}/policy: the function follows the server's default policy again."""
    f = life.functions.get(name)
    if f is None:
        raise ApiError(404, f"no function {text(name)!r}")
    if f.policy is not None:
        life.set_policy(f, None)
    return policy_view(life, name)


# ---------------------------------------------------------------------- the failed-job registry


def failed_summary(job: FailedJob) -> dict[str, Any]:
    tries = Try.decode_all(job.history)
    return {
        "id": job.id,
        "handle": text(job.handle),
        "function": text(job.function),
        "function_url": url(job.function),
        "unique": text(job.unique),
        "priority": PRIORITY_NAMES.get(job.priority, "normal"),
        "background": job.background,
        "failed_at": round(job.failed_at, 6),
        "size": job.size,
        "cut": job.size > len(job.data),
        "tries": len(tries),
        "error": error_line(tries[-1]) if tries else None,
    }


def failed_detail(job: FailedJob) -> dict[str, Any]:
    """One entry with its payload and every try: when, on which worker, how it failed and what it said."""
    view = failed_summary(job)
    view["data"] = _b64(job.data)
    view["data_text"] = None if view["cut"] else _utf8(job.data)
    view["history"] = [{"try": n, "started_at": round(t.started, 6), "ended_at": round(t.ended, 6),
                        "worker": t.worker or None, "how": t.how, "text": text(t.text)}
                       for n, t in enumerate(Try.decode_all(job.history), 1)]
    return view


def _entry(life: Lifecycle, id_text: str) -> FailedJob:
    found = life.failed_jobs.jobs.get(int(id_text)) if id_text.isdigit() else None
    if found is None:
        raise ApiError(404, f"no failed job {id_text!r} in the registry")
    return found


def _chosen(life: Lifecycle, query: dict[str, str]) -> list[FailedJob]:
    """The entries ``?function=NAME`` (exactly that function's) or ``?all=true`` names."""
    registry = life.failed_jobs.jobs.values()
    if "function" in query:
        name = query["function"].encode("utf-8", "surrogateescape")
        return [job for job in registry if job.function == name]
    if query.get("all", "").lower() in ("1", "true", "yes"):
        return list(registry)
    raise ApiError(400, "name the failed jobs: ?function=NAME for one function's, or ?all=true for every one")


def failed_list(life: Lifecycle, query: dict[str, str]) -> dict[str, Any]:
    """GET /api/failed: the registry oldest first, ``?function=NAME``, a page of ``limit`` after id ``after``."""
    limit = query_limit(query)
    after = 0
    if "after" in query:
        if not query["after"].isdigit():
            raise ApiError(400, "after must be an entry's id")
        after = int(query["after"])
    registry = life.failed_jobs
    entries: Iterator[FailedJob] = (job for job in registry.jobs.values() if job.id > after)
    if "function" in query:
        name = query["function"].encode("utf-8", "surrogateescape")
        entries = (job for job in entries if job.function == name)
    page = list(islice(entries, limit + 1))
    return {"failed": [failed_summary(job) for job in page[:limit]], "more": len(page) > limit,
            "total": len(registry), "dropped": registry.dropped}


def failed_one(life: Lifecycle, id_text: str) -> dict[str, Any]:
    return failed_detail(_entry(life, id_text))


def requeue(state: State, id_text: str | None, query: dict[str, str]) -> dict[str, Any]:
    """POST /api/failed/{id}/requeue (ID_TEXT) or /api/failed/requeue?function=|all=: each chosen entry is
    queued again as a new background job and leaves the registry; one whose payload was cut stays."""
    life = state.life
    chosen = [_entry(life, id_text)] if id_text is not None else _chosen(life, query)
    done, refused = state.requeue_failed(chosen)
    if id_text is not None and refused:
        raise ApiError(409, f"failed job {id_text} kept only part of its payload: it cannot be requeued")
    return {"requeued": done, "refused": refused}


def discard(state: State, id_text: str | None, query: dict[str, str]) -> dict[str, Any]:
    """DELETE /api/failed/{id} (ID_TEXT) or /api/failed?function=|all=: forget the chosen entries."""
    life = state.life
    chosen = [_entry(life, id_text)] if id_text is not None else _chosen(life, query)
    return {"discarded": state.discard_failed(chosen)}


# ---------------------------------------------------------------------- jobs that ended lately


def _worker(peer: Peer | None) -> dict[str, Any] | None:
    if peer is None:
        return None
    return {"id": peer.id, "host": peer.host, "client_id": text(peer.client_id)}


def recent(life: Lifecycle, query: dict[str, str]) -> dict[str, Any]:
    """GET /api/recent: the jobs that ended lately (the server remembers the last few hundred), newest first,
    ``?outcome=complete|failed|exception`` (``failed`` also takes exceptions: what did not complete),
    ``?function=NAME``, at most ``limit``."""
    limit = query_limit(query)
    want = query.get("outcome")
    if want is not None and want not in OUTCOMES:
        raise ApiError(400, f"outcome must be one of {', '.join(OUTCOMES)}")
    name = query["function"].encode("utf-8", "surrogateescape") if "function" in query else None
    found = []
    for handle, f, how, started, ended, peer, said in reversed(life.recent):
        if want is not None and how != want and not (want == "failed" and how == "exception"):
            continue
        if name is not None and f.name != name:
            continue
        found.append({
            "handle": text(handle), "function": text(f.name), "function_url": url(f.name), "outcome": how,
            "ended_at": round(ended, 6), "ran": round(ended - started, 6) if peer is not None else None,
            "worker": _worker(peer), "error": text(said) if how == "exception" else None,
        })
        if len(found) == limit:
            break
    return {"jobs": found, "remembered": len(life.recent)}


__all__ = ["OUTCOMES", "outcome", "policies", "policy_view", "put_policy", "drop_policy", "policy_words",
           "failed_list", "failed_one", "requeue", "discard", "recent"]
