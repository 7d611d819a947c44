"""The fast paths (``Lifecycle.fast``: complete's and admit_plain, copies of the general rules for the commonest
case, kept for the CPU they save: docs/benchmarks.md) give exactly what the general rules give: random sessions
played twice, with them and without, send the same bytes to every peer at every step and leave the same state."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geartrain.protocol.packets import T
from geartrain.server.jobs import QUEUED
from geartrain.server.outbox import Outbox
from geartrain.server.policy import parse

from .helpers import Harness
from .test_state_fuzz import Session, op


def snapshot(h: Harness) -> tuple:
    """Everything the job logic keeps that a fast path could get wrong."""
    state, life = h.state, h.state.life
    jobs = [(handle, j.state, j.function.name, j.priority, j.background, [c.id for c in j.clients], j.retries,
             j.unique, j.data, j.store_key, j.queued_at, j.started_at, j.worker.id if j.worker else None)
            for handle, j in state.jobs.items()]
    functions = [(name, list(f.queued), list(f.delayed), f.running, f.workers, f.submitted, f.completed, f.failed,
                  f.exceptions, f.retried, f.timeouts, list(f.wait_hist), list(f.run_hist), f.run_sum,
                  [[j.handle for j in f.queues[p] if j.state == QUEUED] for p in range(3)], sorted(f.uniques, key=str),
                  [p.id for p in f.sleepers])
                 for name, f in state.functions.items()]
    counters = (life.counter, life.submitted, life.completed, life.failed, life.exceptions, life.retried,
                life.timed_out, life.dropped, life.buried, [[f.name for f in ready] for ready in life.ready])
    peers = [(p.id, sorted(p.as_worker.jobs), [j.handle for j in p.as_client.waiting], list(p.as_worker.ran),
              p.as_worker.sleeping, p.as_worker.noop_sent, [_item(x) for x in p.out], p.holds)
             for p in state.peers.values()]
    ended = [(r[0], r[2], r[3], r[4], r[5].id if r[5] is not None else None, r[6]) for r in life.recent]
    kept = [(r.handle, r.outcome, r.data, r.tries) for r in life.kept.by_handle.values()]
    return jobs, functions, counters, peers, ended, kept


def _item(item: object) -> object:
    """An output entry: its bytes, or what a Hold (a reply not known yet) holds."""
    return item if isinstance(item, bytes) else ("hold", item.data, [j.handle for j in item.jobs])


@settings(max_examples=150, deadline=None)
@given(st.lists(op, min_size=20, max_size=80), st.booleans(), st.sampled_from(["", "keep=5", "tries=2 delay=1"]))
def test_the_fast_paths_match_the_general_rules(ops, defer, policy):
    fast = Harness(defer_no_job=defer, grab_wait=5.0)
    general = Harness(defer_no_job=defer, grab_wait=5.0)
    general.state.life.fast = False
    if policy:
        for h in (fast, general):
            h.state.life.set_default_policy(parse(policy))
    a, b = Session(fast), Session(general)
    for step in ops:
        assert a.play(step) == b.play(step), step
        assert snapshot(fast) == snapshot(general), step


def test_the_fast_paths_are_taken():
    # a plain submission and its completion never reach the general rules' create, _place, _end_run, _forget or
    # Outbox.send while the fast paths are on (so the test above compares two different paths)
    h = Harness()
    c, w = h.peer(), h.worker(b"f")
    life = h.state.life

    def refuse(*args, **kwargs):
        raise AssertionError("the general path was taken")

    @contextlib.contextmanager
    def general_paths_refused() -> Iterator[None]:
        with pytest.MonkeyPatch.context() as patch:
            for name in ("create", "_place", "_end_run", "_forget"):
                patch.setattr(life, name, refuse)
            patch.setattr(Outbox, "send", refuse)
            yield

    with general_paths_refused():
        h.send(c, T.SUBMIT_JOB, b"f", b"", b"x")
    h.send(w, T.GRAB_JOB_UNIQ)
    (handle,) = h.state.jobs
    with general_paths_refused():
        h.send(w, T.WORK_COMPLETE, handle, b"r")
    assert not h.state.jobs and life.completed == 1
    assert h.names(c) == ["JOB_CREATED", "WORK_COMPLETE"]
    life.fast = False
    with general_paths_refused(), pytest.raises(AssertionError, match="general path"):
        h.send(c, T.SUBMIT_JOB, b"f", b"", b"x")
