"""The per-turn work of the event loop for one State: write its output, poll, and run its timers.

``schedule()`` asks for one ``flush()`` per loop turn (the connections call it after dispatching a
read, the group commit after answering a batch). A flush answers the grabs that can be answered,
then writes every peer's pending output with one write each, the woken workers first. After a flush
that wrote something, a ``call_soon`` chain keeps the loop polling without sleeping for
``--busy-poll`` (``_poll``); it also runs while grabs wait for a job (``--grab-wait``). A single loop
timer is kept at the state's next due time (``next_wakeup``) and runs ``tick`` then.
"""

from __future__ import annotations

import asyncio
import time

from .state import State

#: the longest a loop timer is set for (the next due time is looked at again then)
TIMER_MAX = 3600.0


class Pump:
    """Flushes, busy polling and the timer of one State on one event loop."""

    def __init__(self, state: State, *, busy_poll: float = 0.0, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.state = state
        self.busy_poll = busy_poll  # seconds the loop keeps polling after a write; 0: never
        self.loop = loop  # set when the server starts
        self.scheduled = False  # a flush is queued for this turn
        self.poll_until = 0.0  # perf_counter() time the busy poll runs to
        self.polling = False  # a busy poll callback is queued
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at: float | None = None
        self.bytes_out = 0  # written to Gearman connections (and HTTP submissions' sinks)

    def schedule(self) -> None:
        """Flush once at the end of this loop turn."""
        if not self.scheduled and self.loop is not None:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every connection's pending output with one write each, then re-arm the timer."""
        self.scheduled = False
        state = self.state
        workers = state.workers
        if workers.grabs or workers.unwoken:
            workers.retry_grabs(time.time())
        outbox = state.outbox
        dirty = outbox.drain() if outbox.dirty or outbox.woken else None  # the woken first
        if dirty:
            take = outbox.take
            for peer in dirty:
                transport = peer.transport
                if peer.closed or transport is None:
                    continue
                out = peer.out
                if out:
                    if peer.holds:
                        data = take(peer)
                        if data:
                            transport.write(data)
                            self.bytes_out += len(data)
                    elif len(out) == 1:
                        data = out[0]
                        out.clear()
                        transport.write(data)
                        self.bytes_out += len(data)
                    elif peer.big:
                        # a payload queued as a part of its own: hand the kernel the parts as they are
                        # (joining them would copy the payload once more); not for TLS or HTTP's sink
                        peer.big = False
                        peer.out = []
                        self.bytes_out += sum(map(len, out))
                        if hasattr(transport, "writelines"):
                            transport.writelines(out)
                        else:
                            transport.write(b"".join(out))
                    else:
                        peer.out = []
                        data = b"".join(out)
                        transport.write(data)
                        self.bytes_out += len(data)
                    conn = peer.extra
                    if conn is not None and conn.paused:
                        conn.check_hard_limit()
                if peer.close_after and not peer.holds:
                    transport.close()
        if (self.busy_poll and dirty) or workers.grabs:  # after a write, or while grabs wait for a job
            self.poll_until = time.perf_counter() + self.busy_poll
            if not self.polling and self.loop is not None:
                self.polling = True
                self.loop.call_soon(self._poll)
        life = state.life
        if life.epoch_heap or life.timeout_heap or state.timers.sched_heap or workers.wake_heap or life.kept.expiry:
            nxt = state.next_wakeup()
            if nxt is not None and (self.timer_at is None or nxt < self.timer_at):
                self.arm_timer()

    def _poll(self) -> None:
        """Busy poll: while a callback is queued the loop polls its sockets without sleeping, so a reply that
        comes back within --busy-poll of our last write is read without a sleep and a wake-up (the job waiting
        on that reply would pay both). It also runs while grabs wait for a job (--grab-wait), and answers each
        with NO_JOB when its wait is over."""
        workers = self.state.workers
        if workers.grabs and workers.retry_grabs(time.time()):  # a grab's wait is over: its NO_JOB goes out
            self.schedule()
        if workers.grabs or time.perf_counter() < self.poll_until:  # every grab's wait ends: this stops
            self.loop.call_soon(self._poll)  # type: ignore[union-attr]
        else:
            self.polling = False

    def arm_timer(self) -> None:
        """Set the loop timer to the state's next due time (or none)."""
        self.cancel_timer()
        nxt = self.state.next_wakeup()
        if nxt is None or self.loop is None:
            return
        delay = max(0.0, nxt - time.time())
        self.timer_at = nxt
        self.timer = self.loop.call_later(min(delay, TIMER_MAX), self._on_timer)

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            self.timer_at = None

    def _on_timer(self) -> None:
        self.timer = None
        self.timer_at = None
        self.state.tick(time.time())
        self.flush()
        self.arm_timer()
