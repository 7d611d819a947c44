"""Random sequences of packets, disconnects, cancels and timer ticks: the state never raises and its counters,
queues and indexes always agree with its jobs."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from geartrain.protocol.packets import T
from geartrain.server.jobs import DELAYED, PENDING, QUEUED, RUNNING
from geartrain.server.policy import parse

from .helpers import Harness, check_transitions

FUNCS = [b"a", b"b"]
SUBMITS = [T.SUBMIT_JOB, T.SUBMIT_JOB_BG, T.SUBMIT_JOB_HIGH, T.SUBMIT_JOB_HIGH_BG, T.SUBMIT_JOB_LOW,
           T.SUBMIT_JOB_LOW_BG]
GRABS = [T.GRAB_JOB, T.GRAB_JOB_UNIQ, T.GRAB_JOB_ALL]

op = st.one_of(
    st.tuples(st.just("submit"), st.integers(0, 2), st.sampled_from(SUBMITS), st.sampled_from(FUNCS),
              st.sampled_from([b"", b"u1", b"u2", b"-"]), st.sampled_from([b"", b"x", b"y"])),
    st.tuples(st.just("epoch"), st.integers(0, 2), st.sampled_from(FUNCS), st.integers(0, 30)),
    st.tuples(st.just("can_do"), st.integers(0, 2), st.sampled_from(FUNCS), st.integers(0, 5)),
    st.tuples(st.just("cant_do"), st.integers(0, 2), st.sampled_from(FUNCS)),
    st.tuples(st.just("reset"), st.integers(0, 2)),
    st.tuples(st.just("grab"), st.integers(0, 2), st.sampled_from(GRABS)),
    st.tuples(st.just("sleep"), st.integers(0, 2)),
    st.tuples(st.just("result"), st.integers(0, 2),
              st.sampled_from([T.WORK_COMPLETE, T.WORK_FAIL, T.WORK_EXCEPTION, T.WORK_DATA, T.WORK_STATUS])),
    st.tuples(st.just("disconnect"), st.integers(0, 2)),
    st.tuples(st.just("cancel"), st.integers(0, 40)),
    st.tuples(st.just("tick"), st.integers(0, 20)),
    st.tuples(st.just("status"), st.integers(0, 40)),
    st.tuples(st.just("turn")),  # the end of a loop turn: the server answers the grabs it can (deferred grabs)
)


def check(h: Harness) -> None:
    state = h.state
    by_fp: Counter = Counter()
    running: Counter = Counter()
    delayed: Counter = Counter()
    for handle, job in state.jobs.items():
        assert job.handle == handle
        f = job.function
        assert state.functions.get(f.name) is f
        if job.state == QUEUED:
            by_fp[f.name, job.priority] += 1
        elif job.state == RUNNING:
            running[f.name] += 1
            assert job.worker is not None and job.worker.as_worker.jobs.get(handle) is job
        elif job.state in (DELAYED, PENDING):
            delayed[f.name, job.priority] += 1
        else:
            raise AssertionError(f"finished job still indexed: {job}")
        if job.unique and (job.data or job.unique != b"-"):
            assert f.uniques.get(job.unique if job.unique != b"-" else (job.data,)) is job
        for client in job.clients:
            assert job in client.as_client.waiting and not client.closed
    for name, f in state.functions.items():
        assert f.running == running[name]
        for p in range(3):
            assert f.queued[p] == by_fp[name, p]
            assert f.delayed[p] == delayed[name, p]
            assert sum(1 for job in f.queues[p] if job.state == QUEUED) == f.queued[p]
            if f.queued[p]:
                assert f in state.life.ready[p]
        assert f.workers == sum(peer.as_worker.abilities.count(f) for peer in state.peers.values())
        for sleeper in f.sleepers:
            assert sleeper.as_worker.sleeping and not sleeper.as_worker.noop_sent and f in sleeper.as_worker.can
    for f in state.functions.values():
        for job in f.uniques.values():
            assert state.jobs.get(job.handle) is job and job.function is f
    kept = state.life.kept
    assert kept.bytes == sum(len(r.data) for r in kept.by_handle.values())
    for unique, handle in kept.by_unique.items():
        assert kept.by_handle[handle].unique == unique
    for failed in state.life.failed_jobs.jobs.values():
        assert failed.handle not in state.jobs  # a buried job is no longer the server's


class Session:
    """A random session: three peers (one replaced when it left) and how each op of ``op`` is played on a Harness."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.peers = [h.peer() for _ in range(3)]
        self.created: list[bytes] = []

    def peer(self, i: int):
        if self.peers[i].closed:
            self.peers[i] = self.h.peer()
        return self.peers[i]

    def play(self, step: tuple) -> list[bytes]:
        """Play STEP; what each of the session's peers was sent by it (in the order of ``peers``)."""
        h = self.h
        kind = step[0]
        if kind == "submit":
            _, i, ptype, name, unique, data = step
            h.send(self.peer(i), ptype, name, unique, data)
        elif kind == "epoch":
            _, i, name, ahead = step
            h.send(self.peer(i), T.SUBMIT_JOB_EPOCH, name, b"", str(int(h.state.now) + ahead).encode(), b"e")
        elif kind == "can_do":
            _, i, name, timeout = step
            if timeout:
                h.send(self.peer(i), T.CAN_DO_TIMEOUT, name, str(timeout).encode())
            else:
                h.send(self.peer(i), T.CAN_DO, name)
        elif kind == "cant_do":
            h.send(self.peer(step[1]), T.CANT_DO, step[2])
        elif kind == "reset":
            h.send(self.peer(step[1]), T.RESET_ABILITIES)
        elif kind == "grab":
            able = [q for q in self.peers if q.as_worker.funcs and not q.closed]
            h.send(able[step[1] % len(able)] if able else self.peer(step[1]), step[2])  # mostly a registered worker
        elif kind == "sleep":
            h.send(self.peer(step[1]), T.PRE_SLEEP)
        elif kind == "result":
            _, i, ptype = step
            busy = [q for q in self.peers if q.as_worker.jobs and not q.closed]
            p = busy[i % len(busy)] if busy else self.peer(i)  # mostly a worker that holds a job
            handles = list(p.as_worker.jobs) or self.created[-1:] or [b"H:test:1"]
            handle = handles[0]
            if ptype == T.WORK_FAIL:
                h.send(p, ptype, handle)
            elif ptype == T.WORK_STATUS:
                h.send(p, ptype, handle, b"1", b"2")
            else:
                h.send(p, ptype, handle, b"r")
        elif kind == "disconnect":
            h.state.disconnect(self.peer(step[1]))
        elif kind == "cancel":
            h.state.cancel(b"H:test:%d" % step[1])
        elif kind == "tick":
            h.tick(step[1])
        elif kind == "status":
            h.send(self.peer(0), T.GET_STATUS, b"H:test:%d" % step[1])
        elif kind == "turn":
            h.state.retry_grabs(h.state.now)
        sent = [h.raw(p) if not p.closed else b"" for p in self.peers]
        self.created = list(h.state.jobs)
        return sent


@settings(max_examples=200, deadline=None)
@given(st.lists(op, min_size=20, max_size=80), st.integers(0, 3), st.integers(0, 2), st.booleans(), st.booleans(),
       st.sampled_from(["", "tries=3 delay=2 keep=5", "tries=2 delay=0 foreground=yes backoff=exponential cap=9"]))
def test_random_sessions_keep_the_state_consistent(ops, retries, wakeup, defer, pass_on, policy):
    # defer: grabs that find no job wait (up to 5 s of the fake clock) as in the server, answered at "turn"s;
    # pass_on: a wake-up not answered by a grab within 3 s of the fake clock goes to another sleeper
    h = Harness(job_retries=retries, worker_wakeup=wakeup, defer_no_job=defer, grab_wait=5.0,
                wake_timeout=3.0 if pass_on else 0.0)
    check_transitions(h.state)  # every job's every change of state is one the lifecycle's table allows
    if policy:  # failed jobs tried again after a delay, outcomes kept, the failed-job registry
        h.state.life.set_default_policy(parse(policy))
    session = Session(h)
    peers = session.peers
    for step in ops:
        session.play(step)
        check(h)
    # every waiting grab gets its answer in the end, and nothing stays stuck behind one
    h.state.retry_grabs(float("inf"))
    check(h)
    assert h.state.workers.grabs == []
    for p in peers:
        if not p.closed:
            h.raw(p)
            assert p.out == [] and p.holds == 0, p.out
    # no wake-up lost: a function with jobs to run and workers asleep for it has one of its workers woken
    for f in h.state.functions.values():
        if f.has_runnable() and f.sleepers:
            assert any(p.as_worker.noop_sent and f in p.as_worker.can for p in h.state.peers.values()), f
    if pass_on:
        # three more workers go to sleep on each function and a job of each is submitted; nobody grabs from here
        # on: every wake-up runs out and is passed on while its function has jobs and sleepers, so one worker of
        # such a function always holds a wake-up not yet run out
        client = h.peer()
        for name in FUNCS:
            for _ in range(3):
                h.send(h.worker(name), T.PRE_SLEEP)
            h.send(client, T.SUBMIT_JOB_BG, name, b"", b"late")
        for _ in range(4):
            h.state.tick(h.state.now + 3.0)
            for p in h.state.peers.values():
                h.raw(p)
            check(h)
            for f in h.state.functions.values():
                if f.has_runnable() and f.sleepers:
                    assert any(p.as_worker.woken_for is f and p.as_worker.noop_sent for p in h.state.peers.values()), f
