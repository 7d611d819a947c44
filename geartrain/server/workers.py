"""Workers: abilities (CAN_DO...), sleeping and waking (PRE_SLEEP, NOOP), and handing out jobs (GRAB_JOB*).

A grab takes the first runnable job across the worker's functions, HIGH before NORMAL before LOW,
round-robin among the functions; a worker with many functions is served from the lifecycle's
``ready``. A job that becomes runnable (``runnable``, the lifecycle's hook) wakes one sleeper
(``-w``); a wake-up a worker does not use is passed on: when it leaves, when it takes other work,
and when it has not grabbed within ``wake_timeout``. In the server a grab that finds no job waits for
one (``grab_wait``, --grab-wait, the loop polling) before it gets NO_JOB.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable

from ..protocol.codec import error_packet, pack_res
from ..protocol.packets import ErrorCode, T
from .jobs import Function, Job, Peer
from .lifecycle import BIG_PART, MANY_FUNCTIONS, NUL, Lifecycle
from .outbox import Hold, Outbox
from .replies import atoi

NOOP = pack_res(T.NOOP)
NO_JOB = pack_res(T.NO_JOB)
JOB_ASSIGN_UNIQ_HEAD = pack_res(T.JOB_ASSIGN_UNIQ)[:8]

#: with more grabs than this waiting, a queued job wakes sleepers as usual (no scan of the grabs for a taker)
MANY_GRABS = 32

#: CAN_DO_TIMEOUT values below this are seconds, values from it up are milliseconds.
TIMEOUT_MS_FROM = 1000

#: an ACL check: (peer, action, name) -> allowed
Acl = Callable[[Peer, str, bytes], bool]


def can_do_timeout_seconds(value: int) -> float:
    """The CAN_DO_TIMEOUT value VALUE, in seconds.

    libgearman documents the value in seconds (the seed's worker sends 10 and means 10 s); gearmand
    1.1.19 and later read milliseconds and raise anything under 1000 to 1000 (gearmand issue #196), so
    workers written for it send 1000 or more. Under 1000 a millisecond reading means nothing to
    gearmand either, so: under 1000 is seconds, 1000 and up is milliseconds. Both kinds of worker keep
    the timeout they meant, up to 16 minutes for the first kind.
    """
    if value <= 0:
        return 0.0
    return float(value) if value < TIMEOUT_MS_FROM else value / 1000.0


def refused(out: Outbox, acl: Acl, peer: Peer, action: str, name: bytes) -> bool:
    """Whether the ACL refuses PEER the ACTION on NAME (then PEER is told PERMISSION_DENIED)."""
    if acl(peer, action, name):
        return False
    out.send(peer, error_packet(ErrorCode.PERMISSION_DENIED, f"{action} not allowed".encode()))
    return True


class Workers:
    """How workers register, sleep, wake and take jobs."""

    def __init__(self, life: Lifecycle, out: Outbox, *, worker_wakeup: int = 1, defer_no_job: bool = False,
                 grab_wait: float = 0.0, wake_timeout: float = 0.0) -> None:
        self.life = life
        self.out = out
        self.worker_wakeup = worker_wakeup  # sleepers woken per queued job; 0 = all of them
        #: a grab that finds no job waits up to grab_wait seconds (at least to the end of the loop turn) for
        #: one before it gets NO_JOB (retry_grabs, called by the server's flush and poll)
        self.defer_no_job = defer_no_job
        self.grab_wait = grab_wait
        #: the deferred grabs: answer kind, worker, the place of its reply, when its wait is over
        self.grabs: list[tuple[int, Peer, Hold, float]] = []
        #: jobs queued this turn without a NOOP, per function, because a waiting grab can take them
        self.unwoken: dict[Function, int] = {}
        # sleeping workers with many functions: kept here once instead of in each function's sleepers
        self.wide_sleepers: OrderedDict[Peer, None] = OrderedDict()
        #: a worker woken for a function that has not grabbed within wake_timeout seconds passes the wake-up on
        #: to another sleeper (0: never), so a worker that never reads cannot hold a job back (pass_wakeups)
        self.wake_timeout = wake_timeout
        self.wake_heap: list[tuple[float, int, Peer, Function]] = []  # wake-ups to pass on if not answered
        self.draining = False  # graceful shutdown: hand out no new jobs
        self.acl: Acl | None = None  # consulted on CAN_DO; None allows everything
        life.runnable = self.runnable
        life.wide_sleepers = self.wide_sleepers

    # ------------------------------------------------------------------ abilities

    def can_do_packet(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        self.can_do(peer, args[0], 0.0)

    def can_do_timeout_packet(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        self.can_do(peer, args[0], can_do_timeout_seconds(atoi(args[1])))

    def can_do(self, peer: Peer, name: bytes, timeout: float) -> None:
        if self.acl is not None and refused(self.out, self.acl, peer, "can_do", name):
            return
        f = self.life.function(name)
        f.workers += 1
        role = peer.as_worker
        role.abilities.append(f)
        if f not in role.can:
            role.funcs.append(f)
        role.can[f] = timeout
        if role.sleeping and not role.noop_sent:
            if f.has_runnable():
                self.wake_for(peer, f)
            elif peer not in self.wide_sleepers:
                f.sleepers[peer] = None

    def cant_do_packet(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        f = self.life.functions.get(args[0])
        if f is not None and f in peer.as_worker.can:
            self._drop_ability(peer, f)

    def reset_abilities_packet(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        for f in list(peer.as_worker.funcs):
            self._drop_ability(peer, f)

    def _drop_ability(self, peer: Peer, f: Function) -> None:
        # Jobs the worker is running for F stay with it: it may still finish them (gearmand requeues them).
        role = peer.as_worker
        n = 0
        kept = []
        for g in role.abilities:
            if g is f:
                n += 1
            else:
                kept.append(g)
        role.abilities = kept
        f.workers -= n
        role.funcs.remove(f)
        del role.can[f]
        f.sleepers.pop(peer, None)
        if role.rr >= len(role.funcs):
            role.rr = 0

    def leave(self, peer: Peer) -> Function | None:
        """PEER disconnected: off the sleepers, its abilities gone. Returns the function whose wake-up it owed."""
        role = peer.as_worker
        woken_for = role.woken_for
        role.woken_for = None
        self._unsleep(peer)
        for f in role.abilities:
            f.workers -= 1
        role.abilities = []
        role.funcs = []
        role.can = {}
        return woken_for

    # ------------------------------------------------------------------ sleeping and waking

    def pre_sleep_packet(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        role = peer.as_worker
        funcs = role.funcs
        if len(funcs) > MANY_FUNCTIONS:
            mine = role.can
            waiting = [f for ready in self.life.ready for f in ready if f in mine]
        else:
            waiting = funcs
        for f in waiting:
            q = f.queued
            if q[0] or q[1] or q[2]:
                # a job is waiting: do not let the worker sleep through it (and, if it was asleep already,
                # take it off the sleepers: wake_for does)
                role.sleeping = True
                self.wake_for(peer, f)
                return
        role.sleeping = True
        role.noop_sent = False
        if len(funcs) > MANY_FUNCTIONS:
            self.wide_sleepers[peer] = None  # one entry, not one per function
        else:
            for f in funcs:
                f.sleepers[peer] = None

    def _unsleep(self, peer: Peer) -> None:
        """Take PEER off every list of sleepers."""
        if self.wide_sleepers.pop(peer, 0) is None:
            return
        for g in peer.as_worker.funcs:
            g.sleepers.pop(peer, None)

    def runnable(self, f: Function) -> None:
        """A job of F became runnable while workers sleep (the lifecycle's hook): wake one for it, unless a waiting
        grab will take it at the end of this turn (retry_grabs then wakes sleepers for what the grabs leave)."""
        if self.grabs and self._grab_will_take(f):
            self.unwoken[f] = self.unwoken.get(f, 0) + 1
        else:
            self.wake(f, self.worker_wakeup)

    def wake(self, f: Function, n: int) -> None:
        """Wake up to N (0 = all) sleeping workers of F, longest asleep first (round-robin over sleepers)."""
        sleepers = f.sleepers
        wide = self.wide_sleepers
        if not n:
            n = len(sleepers) + len(wide)
        while sleepers and n:
            self.wake_for(sleepers.popitem(last=False)[0], f)
            n -= 1
        if n and wide:
            for peer in [p for p in wide if f in p.as_worker.can][:n]:
                self.wake_for(peer, f)

    def wake_for(self, peer: Peer, f: Function) -> None:
        """Send PEER a NOOP for F's jobs. If it has not grabbed within wake_timeout, the wake-up goes on to
        another sleeper (pass_wakeups): a worker that never reads must not hold F's jobs back."""
        role = peer.as_worker
        role.woken_for = f
        role.noop_sent = True
        self._unsleep(peer)
        if self.wake_timeout:
            seq = next(self.life.seq)
            role.woken_seq = seq
            heapq.heappush(self.wake_heap, (self.life.now + self.wake_timeout, seq, peer, f))
        self.out.wake(peer, NOOP)

    def pass_wakeups(self, now: float) -> None:
        """Pass on the wake-ups due by NOW that their workers have not answered with a grab."""
        heap = self.wake_heap
        while heap and heap[0][0] <= now:
            _, seq, peer, f = heapq.heappop(heap)
            role = peer.as_worker
            if role.woken_for is f and role.woken_seq == seq and not peer.closed:
                role.woken_for = None
                if f.has_runnable() and (f.sleepers or self.wide_sleepers):
                    self.life.notice(f"Worker {peer.host} fd {peer.fd} did not ask for a job within "
                                     f"{self.wake_timeout:g}s of its wake-up for {f.name.decode(errors='replace')}; "
                                     "waking another worker",
                                     event="wakeup_passed", function=f.name, peer=peer.host, fd=peer.fd)
                    self.wake(f, 1)

    # ------------------------------------------------------------------ handing out jobs

    def grab_packet(self, kind: int, peer: Peer, args: tuple[bytes, ...]) -> None:
        role = peer.as_worker
        if role.sleeping:
            role.sleeping = False
            if not role.noop_sent:
                self._unsleep(peer)
            role.noop_sent = False
        job = self.life.start_next(peer) if not self.draining else None
        woken_for = role.woken_for
        if woken_for is not None:
            role.woken_for = None
            if (job is None or job.function is not woken_for) and woken_for.has_runnable():
                # woken for F but took other work: pass F's wake-up on to another sleeper
                self.wake(woken_for, 1)
        if job is None:
            if self.defer_no_job and not self.draining:
                # answered by retry_grabs (a job, or NO_JOB once grab_wait is over), in its place among the replies
                self.grabs.append((kind, peer, self.out.hold(peer), self.life.now + self.grab_wait))
            else:
                self.out.send(peer, NO_JOB)
            return
        self._assignment(kind, peer, job)

    def retry_grabs(self, now: float) -> bool:
        """Answer the deferred grabs that can be answered at time NOW, then wake sleepers for the jobs that
        were queued without a wake-up (``unwoken``) and that no grab took; True if there is output.

        A job queued since the grab (a client's submit read in the same loop turn, or within grab_wait)
        goes to the worker instead of NO_JOB, which would cost it a round trip of NO_JOB, PRE_SLEEP, NOOP
        and GRAB before it got the job. A grab whose wait is over gets NO_JOB; so does a worker that sent
        PRE_SLEEP after its grab, as it expects (PRE_SLEEP wakes it if there is work)."""
        answered = False
        waiting = []
        unwoken = self.unwoken
        for grab in self.grabs:
            kind, peer, hold, until = grab
            if peer.closed:
                continue
            sleeping = peer.as_worker.sleeping
            job = None if sleeping or self.draining else self.life.start_next(peer)
            if job is not None:
                self._assignment(kind, peer, job, hold)
            elif until <= now or sleeping or self.draining:
                self.out.resolve(peer, hold, NO_JOB)
            else:
                waiting.append(grab)
                continue
            answered = True
        self.grabs = waiting
        if unwoken:
            # the jobs queued without a wake-up that no grab took: wake sleepers for them now
            self.unwoken = {}
            for f, n in unwoken.items():
                left = min(n, f.queued[0] + f.queued[1] + f.queued[2])
                if left and (f.sleepers or self.wide_sleepers):
                    self.wake(f, self.worker_wakeup * left)
                    answered = True
        return answered

    def _grab_will_take(self, f: Function) -> bool:
        """Whether the waiting grabs that can take a job of F outnumber F's jobs already left to them (then a
        newly queued job of F needs no wake-up: retry_grabs hands it out at the end of this turn)."""
        grabs = self.grabs
        if len(grabs) > MANY_GRABS:
            return False  # not worth the scan: wake as usual
        able = sum(1 for _, peer, _, _ in grabs
                   if f in peer.as_worker.can and not peer.as_worker.sleeping and not peer.closed)
        return able > self.unwoken.get(f, 0)

    def _assignment(self, kind: int, peer: Peer, job: Job, hold: Hold | None = None) -> None:
        """Send worker PEER the JOB_ASSIGN* packet of KIND for JOB (into HOLD, the place kept for a deferred grab's
        answer, if given)."""
        f = job.function
        handle = job.handle
        if kind == T.JOB_ASSIGN:
            packet = pack_res(T.JOB_ASSIGN, handle, f.name, job.data)
        elif kind == T.JOB_ASSIGN_ALL and job.reduce_when is not None and job.reduce_when[0]:
            packet = pack_res(T.JOB_ASSIGN_ALL, handle, f.name, job.unique, job.reducer, job.data)
        else:
            name = f.name
            unique = job.unique
            data = job.data
            size = (len(handle) + len(name) + len(unique) + len(data) + 3).to_bytes(4, "big")
            if len(data) >= BIG_PART and hold is None:  # the payload goes out as its own part: written, never copied
                self.out.send_parts(peer, b"".join((JOB_ASSIGN_UNIQ_HEAD, size, handle, NUL, name, NUL, unique, NUL)),
                                    data)
                return
            packet = b"".join((JOB_ASSIGN_UNIQ_HEAD, size, handle, NUL, name, NUL, unique, NUL, data))
        if hold is not None:
            self.out.resolve(peer, hold, packet)
        else:
            self.out.send(peer, packet)
