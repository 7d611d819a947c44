"""The client side of one connection, sans-I/O: which request each reply answers, which job each WORK_* is for.

A Gearman server answers a connection's requests in order (SUBMIT_JOB* with JOB_CREATED or ERROR,
GET_STATUS with STATUS_RES, OPTION_REQ with OPTION_RES, ECHO_REQ with ECHO_RES), and sends the
WORK_* packets of a foreground job by its handle. ``ClientSession`` keeps the requests waiting for
their reply in order (``pending``) and the jobs waiting for their results by handle (``jobs``), and
hands every packet the server sends to the object it concerns. It does no I/O and knows no packet
format: the owner packs requests, writes them, parses replies and calls ``receive(ptype, args)``.
geartrain's ``AsyncClient`` and the python-gearman compatible client both drive one per connection.

A request is any object with these methods (the session calls the one that applies):

* ``on_created(handle)``: JOB_CREATED answered it; returns the object to give the job's WORK_* packets to
  (usually the request itself; None for a background job).
* ``on_reply(ptype, args)``: STATUS_RES, STATUS_RES_UNIQUE, OPTION_RES or ECHO_RES answered it.
* ``on_error(code, text)``: ERROR answered it.
* ``on_work(ptype, args) -> bool``: a WORK_* packet of its job; True when the job has ended.
* ``on_complete(data)``: WORK_COMPLETE of its job (the common case, without on_work's dispatch).

Several requests can wait for one handle (the server coalesced their submissions by unique). With
``weak=True`` the jobs are watched through weak references: a request its program dropped is
freed, and its empty entry swept once the table has doubled (python-gearman's API, where a caller
may abandon a request without telling anybody).
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from .packets import T

_JOB_CREATED, _WORK_COMPLETE, _ERROR = int(T.JOB_CREATED), int(T.WORK_COMPLETE), int(T.ERROR)
_STATUS_RES = int(T.STATUS_RES)
_WORK = frozenset(int(t) for t in (T.WORK_COMPLETE, T.WORK_DATA, T.WORK_STATUS, T.WORK_WARNING, T.WORK_FAIL,
                                   T.WORK_EXCEPTION))
_REPLIES = frozenset(int(t) for t in (T.STATUS_RES, T.STATUS_RES_UNIQUE, T.OPTION_RES, T.ECHO_RES))
#: the table's entries that hold several watchers (else an entry is the one watcher itself)
_MANY = (list, weakref.WeakSet)


def _ignore(ptype: int, args: tuple) -> None:
    return None


class ClientSession:
    """The requests of one connection awaiting their reply (in order) and the jobs awaiting results (by handle).

    ``stray(ptype, args)`` is called for a packet that concerns nothing here: a reply with no request
    waiting, a WORK_* packet of a job nobody watches, or a packet a client is not sent (NOOP, ...).
    """

    __slots__ = ("pending", "jobs", "stray", "weak", "_sweep_at")

    def __init__(self, stray: Callable[[int, tuple], None] | None = None, *, weak: bool = False) -> None:
        self.pending: deque[Any] = deque()
        self.jobs: dict[bytes, Any] = {}
        self.stray = stray or _ignore
        self.weak = weak
        self._sweep_at = 64

    def expect(self, request: Any) -> None:
        """REQUEST was sent: the next reply not yet claimed is its answer."""
        self.pending.append(request)

    def watch(self, handle: bytes, request: Any) -> None:
        """Hand the WORK_* packets of HANDLE to REQUEST too (besides those already watching it)."""
        jobs = self.jobs
        if self.weak:
            watchers = jobs.get(handle)
            if watchers is None:
                if len(jobs) >= self._sweep_at:
                    for key in [k for k, v in jobs.items() if not v]:
                        del jobs[key]
                    self._sweep_at = max(64, 2 * len(jobs))
                watchers = jobs[handle] = weakref.WeakSet()
            watchers.add(request)
            return
        other = jobs.setdefault(handle, request)
        if other is not request:  # coalesced with a job this session already waits for
            if type(other) is list:
                other.append(request)
            else:
                jobs[handle] = [other, request]

    def watchers(self, handle: bytes) -> list[Any]:
        """The requests watching HANDLE."""
        entry = self.jobs.get(handle)
        return [] if entry is None else list(entry) if type(entry) in _MANY else [entry]

    def receive(self, ptype: int, args: tuple) -> None:
        """One packet from the server: pass it to the request or the jobs it concerns."""
        # the two packets every foreground job gets come first, with nothing but the common case inline
        if ptype == _WORK_COMPLETE:
            entry = self.jobs.pop(args[0], None)
            if entry is not None:
                if type(entry) in _MANY:
                    for request in list(entry):
                        request.on_complete(args[1])
                else:
                    entry.on_complete(args[1])
                return
        elif ptype == _JOB_CREATED:
            pending = self.pending
            if not pending:
                self.stray(ptype, args)
                return
            watcher = pending.popleft().on_created(args[0])
            # the common case inline: a handle nobody here watched yet (watch() does the rest)
            if watcher is not None and (self.weak or self.jobs.setdefault(args[0], watcher) is not watcher):
                self.watch(args[0], watcher)
            return
        if ptype in _WORK:
            self._work(ptype, args)
        elif ptype in _REPLIES:
            if not self.pending:
                self.stray(ptype, args)
                return
            self.pending.popleft().on_reply(ptype, args)
            if ptype == _STATUS_RES and args[1] != b"1":
                self.jobs.pop(args[0], None)  # the server no longer knows the job: no WORK_* will come for it
        elif ptype == _ERROR and self.pending:
            self.pending.popleft().on_error(args[0], args[1])
        else:
            self.stray(ptype, args)

    def _work(self, ptype: int, args: tuple) -> None:
        """A WORK_* packet other than a WORK_COMPLETE of a watched handle."""
        handle = args[0]
        entry = self.jobs.get(handle)
        if entry is None and handle.endswith(b"\0"):
            # gearmand turns WORK_EXCEPTION into WORK_FAIL for clients without the option, keeping its NUL
            handle = handle.rstrip(b"\0")
            entry = self.jobs.get(handle)
        if entry is None:
            self.stray(ptype, args)
            return
        if type(entry) in _MANY:
            ended = False
            for request in list(entry):
                ended = request.on_work(ptype, args) or ended
        else:
            ended = entry.on_work(ptype, args)
        if ended:
            self.jobs.pop(handle, None)

    def close(self) -> tuple[list[Any], list[Any]]:
        """The connection is gone: (the requests that got no reply, in order; the requests watching a job), and
        the session is empty again."""
        pending, self.pending = list(self.pending), deque()
        jobs, self.jobs = self.jobs, {}
        return pending, list(_each(jobs.values()))


def _each(entries: Any) -> Iterator[Any]:
    for entry in entries:
        if type(entry) in _MANY:
            yield from list(entry)
        else:
            yield entry
