"""Workers: abilities (CAN_DO...), sleeping and waking (PRE_SLEEP, NOOP), and handing out jobs (GRAB_JOB*).

A part of State (a mixin: every method works on the State's attributes). A grab takes the first
runnable job across the worker's functions, HIGH before NORMAL before LOW, round-robin among the
functions; a worker with many functions is served from ``State.ready``. A queued job wakes one
sleeper (``-w``); a wake-up a worker does not use is passed on. In the server a grab that finds no
job waits for one (``State.grab_wait``, --grab-wait, the loop polling) before it gets NO_JOB.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left

from ..protocol.codec import pack_res
from ..protocol.packets import HIGH, LOW, NORMAL
from .jobs import QUEUED, RUNNING, TIME_BUCKETS, Function, Hold, Job, Peer
from .replies import (
    BIG_PART,
    FIRST_BOUND,
    JOB_ASSIGN,
    JOB_ASSIGN_ALL,
    JOB_ASSIGN_UNIQ_HEAD,
    MANY_FUNCTIONS,
    NO_JOB,
    NOOP,
    NUL,
    atoi,
)

#: with more grabs than this waiting, a queued job wakes sleepers as usual (no scan of the grabs for a taker)
MANY_GRABS = 32

#: CAN_DO_TIMEOUT values below this are seconds, values from it up are milliseconds.
TIMEOUT_MS_FROM = 1000


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

class Workers:
    """How workers register, sleep, wake and take jobs.

    A part of State: it works on State's ``functions``, ``ready``, ``wide_sleepers``, the timeout heap
    and ``draining``, and on each worker's Peer (abilities, sleep flags, running jobs)."""

    def _can_do(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        self.can_do(peer, args[0], 0.0)

    def _can_do_timeout(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        self.can_do(peer, args[0], can_do_timeout_seconds(atoi(args[1])))

    def can_do(self, peer: Peer, name: bytes, timeout: float) -> None:
        if self.acl is not None and not self._allowed(peer, "can_do", name):
            return
        f = self.function(name)
        f.workers += 1
        peer.abilities.append(f)
        if f not in peer.timeouts:
            peer.funcs.append(f)
        peer.timeouts[f] = timeout
        if peer.sleeping and not peer.noop_sent:
            if f.has_runnable():
                self._wake_for(peer, f)
            elif peer not in self.wide_sleepers:
                f.sleepers[peer] = None

    def _cant_do(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        f = self.functions.get(args[0])
        if f is not None and f in peer.timeouts:
            self._drop_ability(peer, f)

    def _reset_abilities(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        for f in list(peer.funcs):
            self._drop_ability(peer, f)

    def _drop_ability(self, peer: Peer, f: Function) -> None:
        # Jobs the worker is running for F stay with it: it may still finish them (gearmand requeues them).
        n = 0
        kept = []
        for g in peer.abilities:
            if g is f:
                n += 1
            else:
                kept.append(g)
        peer.abilities = kept
        f.workers -= n
        peer.funcs.remove(f)
        del peer.timeouts[f]
        f.sleepers.pop(peer, None)
        if peer.rr >= len(peer.funcs):
            peer.rr = 0

    def _pre_sleep(self, peer: Peer, args: tuple[bytes, ...]) -> None:
        funcs = peer.funcs
        if len(funcs) > MANY_FUNCTIONS:
            mine = peer.timeouts
            waiting = [f for ready in self.ready for f in ready if f in mine]
        else:
            waiting = funcs
        for f in waiting:
            q = f.queued
            if q[0] or q[1] or q[2]:
                # a job is waiting: do not let the worker sleep through it (and, if it was asleep already,
                # take it off the sleepers: _wake_for does)
                peer.sleeping = True
                self._wake_for(peer, f)
                return
        peer.sleeping = True
        peer.noop_sent = False
        if len(funcs) > MANY_FUNCTIONS:
            self.wide_sleepers[peer] = None  # one entry, not one per function
        else:
            for f in funcs:
                f.sleepers[peer] = None

    def _unsleep(self, peer: Peer) -> None:
        """Take PEER off every list of sleepers."""
        if self.wide_sleepers.pop(peer, 0) is None:
            return
        for g in peer.funcs:
            g.sleepers.pop(peer, None)

    def _wake(self, f: Function, n: int) -> None:
        """Wake up to N (0 = all) sleeping workers of F, longest asleep first (round-robin over sleepers)."""
        sleepers = f.sleepers
        wide = self.wide_sleepers
        if not n:
            n = len(sleepers) + len(wide)
        while sleepers and n:
            self._wake_for(sleepers.popitem(last=False)[0], f)
            n -= 1
        if n and wide:
            for peer in [p for p in wide if f in p.timeouts][:n]:
                self._wake_for(peer, f)

    def _wake_for(self, peer: Peer, f: Function) -> None:
        """Send PEER a NOOP for F's jobs. If it has not grabbed within wake_timeout, the wake-up goes on to
        another sleeper (pass_wakeups): a worker that never reads must not hold F's jobs back."""
        peer.woken_for = f
        peer.noop_sent = True
        self._unsleep(peer)
        if self.wake_timeout:
            seq = next(self._seq)
            peer.woken_seq = seq
            heapq.heappush(self.wake_heap, (self.now + self.wake_timeout, seq, peer, f))
        if not peer.closed:
            # a wake-up is written before the rest of the turn's output (State.woken): the worker's
            # round trip for the job is what the job waits on
            out = peer.out
            if not out:
                self.woken.append(peer)
            out.append(NOOP)

    def pass_wakeups(self, now: float) -> None:
        """Pass on the wake-ups due by NOW that their workers have not answered with a grab (Timers.tick)."""
        heap = self.wake_heap
        while heap and heap[0][0] <= now:
            _, seq, peer, f = heapq.heappop(heap)
            if peer.woken_for is f and peer.woken_seq == seq and not peer.closed:
                peer.woken_for = None
                if f.has_runnable() and (f.sleepers or self.wide_sleepers):
                    self.notice(f"Worker {peer.host} fd {peer.fd} did not ask for a job within "
                                f"{self.wake_timeout:g}s of its wake-up for {f.name.decode(errors='replace')}; "
                                "waking another worker")
                    self._wake(f, 1)

    def _take(self, peer: Peer) -> Job | None:
        """The next job for PEER: highest priority first across all its functions, round-robin among them."""
        funcs = peer.funcs
        n = len(funcs)
        if n == 1:
            f = funcs[0]
            q = f.queued
            for p in (HIGH, NORMAL, LOW):
                if q[p]:
                    dq = f.queues[p]
                    job = dq.popleft()
                    while job.state != QUEUED:
                        job = dq.popleft()
                    q[p] -= 1
                    return job
            return None
        if not n:
            return None
        if n > MANY_FUNCTIONS:
            return self._take_many(peer)
        rr = peer.rr
        for p in (HIGH, NORMAL, LOW):
            for i in range(n):
                j = (rr + i) % n
                f = funcs[j]
                if f.queued[p]:
                    dq = f.queues[p]
                    job = dq.popleft()
                    while job.state != QUEUED:
                        job = dq.popleft()
                    f.queued[p] -= 1
                    peer.rr = (j + 1) % n
                    return job
        return None

    def _take_many(self, peer: Peer) -> Job | None:
        """_take for a worker with many functions (CI systems register thousands): walk the functions that
        have jobs (State.ready) instead of the worker's list; a served function moves to the back."""
        mine = peer.timeouts
        for p in (HIGH, NORMAL, LOW):
            ready = self.ready[p]
            if not ready:
                continue
            empty = []
            found = None
            for f in ready:
                if not f.queued[p]:
                    empty.append(f)
                elif f in mine:
                    found = f
                    break
            for f in empty:
                del ready[f]
            if found is not None:
                dq = found.queues[p]
                job = dq.popleft()
                while job.state != QUEUED:
                    job = dq.popleft()
                found.queued[p] -= 1
                del ready[found]
                if found.queued[p]:
                    ready[found] = None
                return job
        return None

    def _grab(self, kind: int, peer: Peer, args: tuple[bytes, ...]) -> None:
        if peer.sleeping:
            peer.sleeping = False
            if not peer.noop_sent:
                self._unsleep(peer)
            peer.noop_sent = False
        job = self._take(peer) if not self.draining else None
        woken_for = peer.woken_for
        if woken_for is not None:
            peer.woken_for = None
            if (job is None or job.function is not woken_for) and woken_for.has_runnable():
                # woken for F but took other work: pass F's wake-up on to another sleeper
                self._wake(woken_for, 1)
        if job is None:
            if self.defer_no_job and not self.draining:
                # answered by retry_grabs (a job, or NO_JOB once grab_wait is over), in its place among the replies
                self.grabs.append((kind, peer, self._hold(peer), self.now + self.grab_wait))
            else:
                self.send(peer, NO_JOB)
            return
        self._assign(kind, peer, job)

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
            job = None if peer.sleeping or self.draining else self._take(peer)
            if job is not None:
                self._assign(kind, peer, job, hold)
            elif until <= now or peer.sleeping or self.draining:
                self._resolve(peer, hold, NO_JOB)
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
                    self._wake(f, self.worker_wakeup * left)
                    answered = True
        return answered

    def _grab_will_take(self, f: Function) -> bool:
        """Whether the waiting grabs that can take a job of F outnumber F's jobs already left to them (then a
        newly queued job of F needs no wake-up: retry_grabs hands it out at the end of this turn)."""
        grabs = self.grabs
        if len(grabs) > MANY_GRABS:
            return False  # not worth the scan: wake as usual
        able = sum(1 for _, peer, _, _ in grabs if f in peer.timeouts and not peer.sleeping and not peer.closed)
        return able > self.unwoken.get(f, 0)

    def _assign(self, kind: int, peer: Peer, job: Job, hold: Hold | None = None) -> None:
        """Hand JOB to worker PEER: its records, its deadline (CAN_DO_TIMEOUT), and the JOB_ASSIGN* packet of
        KIND queued for PEER (into HOLD, the place kept for a deferred grab's answer, if given)."""
        f = job.function
        job.state = RUNNING
        job.worker = peer
        now = self.now
        job.started_at = now
        wait = now - job.queued_at
        # queue-wait histogram, inline: one float compare for the common "taken within a millisecond"
        f.wait_hist[0 if wait <= FIRST_BOUND else bisect_left(TIME_BUCKETS, wait)] += 1
        f.wait_sum += wait
        f.running += 1
        handle = job.handle
        peer.jobs[handle] = job
        timeout = peer.timeouts[f]
        if timeout:
            if peer.stale:
                peer.stale.discard(handle)
            heap = self.timeout_heap
            heapq.heappush(heap, (self.now + timeout, next(self._seq), job, peer, job.retries))
            if len(heap) > self._timeout_limit:
                # finished jobs' deadlines stay in the heap until due: drop them once they are half of it
                heap[:] = [e for e in heap if e[2].state == RUNNING and e[2].worker is e[3] and e[2].retries == e[4]]
                heapq.heapify(heap)
                self._timeout_limit = max(1024, 2 * len(heap))
        if kind == JOB_ASSIGN:
            packet = pack_res(JOB_ASSIGN, handle, f.name, job.data)
        elif kind == JOB_ASSIGN_ALL and job.reduce_when is not None and job.reduce_when[0]:
            packet = pack_res(JOB_ASSIGN_ALL, handle, f.name, job.unique, job.reducer, job.data)
        else:
            name = f.name
            unique = job.unique
            data = job.data
            size = (len(handle) + len(name) + len(unique) + len(data) + 3).to_bytes(4, "big")
            if len(data) >= BIG_PART and hold is None:  # the payload goes out as its own part: written, never copied
                self.send_parts(peer, b"".join((JOB_ASSIGN_UNIQ_HEAD, size, handle, NUL, name, NUL, unique, NUL)),
                                data)
                return
            packet = b"".join((JOB_ASSIGN_UNIQ_HEAD, size, handle, NUL, name, NUL, unique, NUL, data))
        if hold is not None:
            self._resolve(peer, hold, packet)
        elif not peer.closed:
            out = peer.out
            if not out:
                self.dirty.append(peer)
            out.append(packet)
