"""Differential test: each scripted session against the C gearmand and against geartrain, replies compared.

The sessions (sessions.py, and seeded random ones from random_sessions.py) are played on a fresh
gearmand: that run must match the packet types each session declares (so a session that no longer
describes gearmand fails loudly), and its normalised transcript is the expectation. The same
session is played at the same time on a fresh geartrain, and the two transcripts must be equal,
byte for byte after normalising job handles, fds, pid and version (see differential.py).
"""

from __future__ import annotations

import difflib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import start_gearmand, start_geartrain

from .differential import Transcript, run, type_mismatches
from .random_sessions import RANDOM_SESSIONS
from .sessions import SESSIONS

#: the scripted sessions, then seeded random ones (random_sessions.py)
ALL = {**SESSIONS, **RANDOM_SESSIONS}

pytestmark = pytest.mark.interop


#: sessions that also run against geartrain on its durable SQLite queue (background jobs, coalescing,
#: requeues, cancels: where writing to the store before JOB_CREATED could change what clients see)
DURABLE = ["submit_every_priority", "grab_variants", "unique_coalescing", "admin_maxqueue", "admin_cancel_job",
           "get_status_unique", "worker_disconnect_requeues", "job_retries_limit", "epoch_jobs", "framing"]


def _play(kind: str, name: str, tmp: Path, queue: str = "memory") -> Transcript:
    session = ALL[name]
    if kind == "gearmand":
        server = start_gearmand(tmp, *session.args)
    else:
        store = ("--queue", "memory" if queue == "memory" else f"sqlite:///{tmp}/queue.db")
        server = start_geartrain(tmp, *session.args, *session.geartrain_args, *store)
    try:
        return run(session, server.host, server.port)
    finally:
        server.stop()


def _diff(want: Transcript, got: Transcript) -> str:
    return "\n".join(difflib.unified_diff(want.lines, got.lines, "gearmand", "geartrain", lineterm="", n=2))


@pytest.mark.parametrize(("name", "queue"), [(n, "memory") for n in ALL] + [(n, "sqlite") for n in DURABLE])
def test_same_replies_as_gearmand(name: str, queue: str, tmp_path: Path) -> None:
    # the two servers are separate processes on separate ports: play both at once
    with ThreadPoolExecutor(2) as pool:
        oracle = pool.submit(_play, "gearmand", name, tmp_path)
        ours = pool.submit(_play, "geartrain", name, tmp_path, queue)
        want, got = oracle.result(), ours.result()
    bad = type_mismatches(want)
    assert not bad, f"session {name!r} does not describe gearmand any more: {bad}\n" + "\n".join(want.lines)
    assert got.lines == want.lines, f"session {name!r} differs from gearmand:\n{_diff(want, got)}"
