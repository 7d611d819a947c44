"""The lifecycle's table of transitions: every transition is made by some session, checked against the table,
and a change of state the table does not allow is caught; only lifecycle.py sets a job's state."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from geartrain.protocol.packets import T
from geartrain.server.jobs import QUEUED, RUNNING
from geartrain.server.lifecycle import TRANSITIONS
from geartrain.server.policy import parse

from .helpers import Harness, check_transitions

SERVER = Path(__file__).resolve().parents[2] / "geartrain" / "server"


class FakeCommitter:
    """Stands in for group.GroupCommit: keeps what the state files, answers nothing by itself."""

    def __init__(self) -> None:
        self.batches: list = []
        self.dones: list = []

    def add_job(self, job, record):
        from geartrain.server.group import Batch

        batch = Batch()
        batch.jobs.append(job)
        batch.job_records.append(record)
        self.batches.append(batch)
        return batch

    def add(self, record, callback):
        callback(None)

    def done(self, key):
        self.dones.append(key)


def test_every_transition_is_made_and_checked():
    h = Harness(job_retries=2)
    seen = check_transitions(h.state)
    c, w = h.peer(), h.worker(b"f")
    h.submit(c, data=b"complete")
    h.send(w, T.GRAB_JOB)
    (handle, _, _) = h.got(w)[0][1]
    h.send(w, T.WORK_COMPLETE, handle, b"r")  # place, start, complete
    for ptype in (T.WORK_FAIL, T.WORK_EXCEPTION):
        h.submit(c)
        h.send(w, T.GRAB_JOB)
        handle = h.got(w)[0][1][0]
        h.send(w, ptype, *((handle,) if ptype == T.WORK_FAIL else (handle, b"boom")))  # fail, raise_
    h.submit(c, ptype=T.SUBMIT_JOB_BG)
    h.send(w, T.GRAB_JOB)
    h.state.disconnect(w)  # requeue
    gone = h.peer()
    h.submit(gone, data=b"dropped")
    h.state.disconnect(gone)  # drop
    h.send(c, T.SUBMIT_JOB_EPOCH, b"f", b"", str(int(h.state.now) + 5).encode(), b"later")
    h.state.tick(h.state.now + 10)  # release
    committer = FakeCommitter()
    h.state.committer = committer
    h.send(c, T.SUBMIT_JOB_BG, b"f", b"", b"stored")
    h.send(c, T.SUBMIT_JOB_BG, b"f", b"", b"refused")
    ok, refused = committer.batches
    h.state.jobs_committed(ok, None)  # pend, commit
    h.state.jobs_committed(refused, "disk full")  # refuse
    h.state.committer = None
    h.state.life.set_policy(h.state.function(b"g"), parse("tries=2 delay=1"))
    w2 = h.worker(b"g")
    h.submit(c, b"g", ptype=T.SUBMIT_JOB_BG)
    h.send(w2, T.GRAB_JOB)
    h.send(w2, T.WORK_FAIL, h.got(w2)[0][1][0])  # retry
    assert {name for name, _, _ in seen} == set(TRANSITIONS) - {"start_next", "release"}
    assert [job.state for job in h.state.jobs.values()].count(QUEUED) == 3


def test_a_transition_from_a_state_the_table_does_not_allow_is_caught():
    h = Harness()
    check_transitions(h.state)
    c = h.peer()
    handle = h.submit(c)
    job = h.state.jobs[handle]
    with pytest.raises(AssertionError, match="complete of a queued job"):
        h.state.life.complete(job, b"never ran")


def test_a_change_of_state_the_table_does_not_allow_is_caught():
    h = Harness()
    check_transitions(h.state)
    job = h.state.jobs[h.submit(h.peer())]
    with pytest.raises(AssertionError, match="queued -> pending"):
        job.state = 4
    job.state = RUNNING  # allowed by the table (start)


def test_only_the_lifecycle_sets_a_jobs_state():
    setters = []
    for path in SERVER.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            for t in targets:
                # job.state = ... (a job is always a plain name where its state is set; self.state is not a job's)
                if isinstance(t, ast.Attribute) and t.attr == "state" and isinstance(t.value, ast.Name) \
                        and t.value.id != "self":
                    setters.append(f"{path.relative_to(SERVER)}:{node.lineno}")
    assert setters and all(s.startswith("lifecycle.py:") for s in setters), setters
