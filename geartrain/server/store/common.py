"""What every durable backend shares: the side records for what gearmand's layout cannot hold,
generated keys for empty uniques, the test for a batch that needs neither (``plain_batch``), the rows
of the tables beside the queue, and one connection with reconnect, backoff and timeouts.

gearmand keeps (unique, function, priority, data, when) per job. geartrain also needs the reducer,
the SCHED schedule and, for jobs submitted with an EMPTY unique, the fact that the unique is empty
(gearmand's (unique, function) key would make all such jobs of one function collide). Those go in
an "extra" record — a nullable column ``geartrain_extra`` in SQL tables, a side hash in Redis —
that gearmand never reads. A job whose unique cannot be used as the key is filed under a generated
key ``geartrain:<32 hex>`` (a harmless unique if gearmand ever reads the table) and the extra record
holds its real unique, which replay restores.

A job under a retry policy also has its tries so far, what each said, and, once it failed, the run-at
time of its next try: a "retry" record (t: tries, h: history, w: the run-at time), in a second nullable
column ``geartrain_retry`` (a side hash in Redis), written by add() for a job that has tries and by
settle() for a retried one. Its run-at time comes first on replay (the SQL column ``when_to_run`` is
set too, as far as it can hold it, so gearmand would run the job at the same time); a row gearmand
writes again has neither column, as gearmand's INSERT names only its own.

Kept results, the failed-job registry and retry policies are tables (hashes) of their own beside the
queue, named after it: ``<table>_results``, ``<table>_failed``, ``<table>_policies``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from .base import Extras, FailedJob, KeptResult, QueueConfigError, Retry, Settlement, Store, StoredJob, StoreError

log = logging.getLogger("geartrain.store")

T = TypeVar("T")

GENERATED_PREFIX = b"geartrain:"
_VERSION = 1
_TLV = struct.Struct(">cI")


def generated_key() -> bytes:
    """A fresh unique to file a job under (42 bytes: fits gearmand's VARCHAR(64))."""
    return GENERATED_PREFIX + uuid.uuid4().hex.encode()


def needs_generated_key(unique: bytes) -> bool:
    """An empty unique, or ``-`` (coalesce by data), cannot key a job: many jobs of one function share it."""
    return not unique or unique == b"-"


def pack_extra(**fields: bytes | None) -> bytes | None:
    """Encode the fields that are set (one-letter names) as a versioned TLV record; None if none are."""
    parts = [bytes((_VERSION,))]
    for name, value in fields.items():
        if value is None:
            continue
        parts.append(_TLV.pack(name.encode(), len(value)))
        parts.append(value)
    return b"".join(parts) if len(parts) > 1 else None


def unpack_extra(blob: bytes | None) -> dict[str, bytes]:
    """Decode pack_extra's record; unknown versions and fields are ignored (forward compatible)."""
    if not blob or blob[0] != _VERSION:
        return {}
    out: dict[str, bytes] = {}
    pos, end = 1, len(blob)
    while pos + _TLV.size <= end:
        tag, size = _TLV.unpack_from(blob, pos)
        pos += _TLV.size
        out[tag.decode("latin-1")] = bytes(blob[pos:pos + size])
        pos += size
    return out


INT32_MAX = 2**31 - 1


def sql_row(job: StoredJob, unique_ok: Callable[[bytes], bool] | None = None,
            max_when: int = 2**63 - 1) -> tuple[bytes, int, bytes | None]:
    """How JOB goes in a SQL table: the unique to file it under, the when_to_run value, and its
    geartrain_extra record (u: real unique, r: reducer, s: schedule, w: a run-at time too big for
    the column, which then holds MAX_WHEN — gearmand's MySQL/PostgreSQL columns are 32-bit).

    Sets job.store_key when a generated key is used (empty unique, or one the column cannot hold)."""
    unique = job.unique
    when = job.when
    real_unique = None
    if job.store_key:
        key = job.store_key
        real_unique = unique
    elif needs_generated_key(unique) or (unique_ok is not None and not unique_ok(unique)):
        key = job.store_key = generated_key()
        real_unique = unique
    else:
        if not (job.reducer or job.schedule) and 0 <= when <= max_when:
            return unique, when, None  # the common case, kept cheap
        key = unique
    big_when = None
    if not 0 <= when <= max_when:
        big_when = b"%d" % when
        when = max_when if when > 0 else 0
    return key, when, pack_extra(u=real_unique, r=job.reducer or None, s=job.schedule or None, w=big_when)


class Names(dict):
    """One bytes object per function name during a replay: a million jobs of one function then
    hold one name, not a million copies of it."""

    def __call__(self, name: bytes) -> bytes:
        return self.setdefault(name, name)


def job_from_row(unique: bytes, function: bytes, priority: int | None, data: bytes | None,
                 when: int | None, extra: bytes | None, retry: bytes | None = None) -> StoredJob:
    """A StoredJob from one row of gearmand's columns plus geartrain_extra and geartrain_retry."""
    if extra is None and retry is None:  # the common case, kept cheap
        return StoredJob(function, unique, data or b"", priority if priority in (0, 1, 2) else 1, when or 0)
    fields = unpack_extra(extra)
    tried = unpack_extra(retry)
    job = StoredJob(function=function, unique=unique, data=data or b"",
                    priority=priority if priority in (0, 1, 2) else 1,
                    when=int(tried.get("w") or fields.get("w") or when or 0),
                    reducer=fields.get("r", b""), schedule=fields.get("s", b""),
                    tries=int(tried.get("t", b"0")), history=tried.get("h", b""))
    if "u" in fields:
        job.store_key = unique
        job.unique = fields["u"]
    return job


def retry_record(tries: int, history: bytes, when: int | None = None) -> bytes | None:
    """The retry record of a job (None for one that never failed and has no run-at time of a retry)."""
    return pack_extra(t=b"%d" % tries if tries else None, h=history or None, w=None if when is None else b"%d" % when)


def job_retry(job: StoredJob) -> bytes | None:
    """What add() writes in the retry record of JOB: its tries, if it has any."""
    return retry_record(job.tries, job.history) if job.tries or job.history else None


def retry_row(retry: Retry, max_when: int = 2**63 - 1) -> tuple[int, bytes]:
    """How a Retry updates its job's row: the when_to_run column (whole seconds rounded up, as far as
    the column holds them) and the retry record, which has the exact run-at time."""
    when = max(0, math.ceil(retry.when))
    return min(when, max_when), retry_record(retry.tries, retry.history, when)  # type: ignore[return-value]


def only_done(batch: Settlement) -> bool:
    """Does BATCH only delete jobs (the hot path: every finished durable job)?"""
    return not (batch.retried or batch.kept or batch.unkept or batch.buried or batch.unburied or batch.policies)


def deletions(batch: Settlement) -> Settlement:
    """What of BATCH may be written alone when the database has no room for the rest: its deletes, but not
    the deletes of jobs when it buries one (a buried job's row goes in the same transaction as its burial)."""
    return Settlement(done=[] if batch.buried else batch.done, unkept=batch.unkept, unburied=batch.unburied,
                      policies={f: "" for f, text in batch.policies.items() if not text})


def kept_row(r: KeptResult) -> tuple:
    """A kept result as a row: (handle, function_name, unique_key, outcome, data, ended, expires, tries)."""
    return (r.handle, r.function, r.unique, r.outcome, r.data, r.ended, r.expires, r.tries)


def kept_from_row(row: Sequence[Any]) -> KeptResult:
    handle, function, unique, outcome, data, ended, expires, tries = row
    return KeptResult(handle=_b(handle), function=_b(function), unique=_b(unique), outcome=_s(outcome),
                      data=_b(data), ended=float(ended), expires=float(expires), tries=int(tries or 0))


def failed_row(f: FailedJob) -> tuple:
    """A failed job as a row: (id, handle, function_name, unique_key, data, data_size, priority, background,
    failed_at, history)."""
    return (f.id, f.handle, f.function, f.unique, f.data, f.size, f.priority, int(f.background), f.failed_at,
            f.history)


def failed_from_row(row: Sequence[Any]) -> FailedJob:
    id_, handle, function, unique, data, size, priority, background, failed_at, history = row
    return FailedJob(id=int(id_), handle=_b(handle), function=_b(function), unique=_b(unique), data=_b(data),
                     size=int(size or 0), priority=int(priority if priority is not None else 1),
                     background=bool(background), failed_at=float(failed_at or 0.0), history=_b(history))


def extras_from_rows(kept: Sequence[Sequence[Any]], failed: Sequence[Sequence[Any]],
                     policies: Sequence[Sequence[Any]]) -> Extras:
    """Extras from the rows of the three tables (failed jobs sorted by id here, whatever the query did)."""
    return Extras(kept=[kept_from_row(r) for r in kept],
                  failed=sorted((failed_from_row(r) for r in failed), key=lambda f: f.id),
                  policies={_b(f): _s(p) for f, p in policies})


def _b(value: Any) -> bytes:
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else bytes(value)


def _s(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes | bytearray | memoryview) else str(value)


def last_wins(items: Sequence[T], key: Callable[[T], Any]) -> Sequence[T]:
    """ITEMS without earlier duplicates of one key (one statement may not touch a row twice)."""
    seen = {key(j): j for j in items}
    return items if len(seen) == len(items) else list(seen.values())


def plain_batch(jobs: Sequence[StoredJob]) -> bool:
    """Can every job of JOBS be filed as it is: under its own unique (not empty, not ``-``, no two
    with the same key) with nothing for the extra and retry records (no run-at time, reducer, schedule
    or tries)? Then
    a store can write the batch without sql_row and last_wins (nearly every batch of a busy server)."""
    for job in jobs:
        unique = job.unique
        if (job.store_key or job.reducer or job.schedule or job.when or not unique or unique == b"-" or job.tries
                or job.history):
            return False
    if len({job.function for job in jobs}) == 1:
        return len({job.unique for job in jobs}) == len(jobs)
    return len({(job.unique, job.function) for job in jobs}) == len(jobs)


def is_text(value: bytes) -> bool:
    """Can VALUE go in a PostgreSQL/MySQL text column unchanged (UTF-8, no NUL)?"""
    if b"\0" in value:
        return False
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


class NoRoomError(StoreError):
    """The database has no room for the write (a full disk, Redis at maxmemory)."""


class ConnectedStore(Store):
    """A store on one connection to a database server: serialised calls, timeouts, reconnects.

    A call that fails because the connection broke is retried once on a fresh connection (every
    write is idempotent: upsert / delete by key), so a killed connection costs nothing. If the
    server cannot be reached the call raises StoreError and later calls try again, no more often
    than a backoff that grows from 0.1 s to 5 s; calls inside the backoff fail at once.

    An add that fails so (its submitters get QUEUE_ERROR: "the job is not created") may still have
    reached the database: the connection can break after the database committed it and before its
    reply came back. Its keys are remembered as unsettled, and the next connection deletes them
    before it writes or reads anything else, so such a job never runs.

    A database with no room for a write (a full disk, Redis at maxmemory) is not a broken
    connection: it is logged once when it starts and once when it ends, its adds raise StoreError
    (QUEUE_ERROR), and nothing reconnects. A settlement that writes gets its deletes written alone
    then (``deletions``), so finished jobs are still deleted, and raises NoRoomError for the rest.
    """

    #: seconds one add/done may take before the connection is given up
    op_timeout: float = 10.0
    #: seconds to wait for a connection
    connect_timeout: float = 5.0
    backoff_min = 0.1
    backoff_max = 5.0
    #: can a write's reply be lost after the database committed it (False for an embedded database)?
    replies_can_be_lost = True

    def __init__(self) -> None:
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._retry_at = 0.0
        self._backoff = 0.0
        self._down_since: float | None = None
        self._full_since: float | None = None
        #: keys of adds answered with StoreError that may have reached the database, in order
        self._unsettled: dict[tuple[bytes, bytes], None] = {}

    # -- what a backend provides -------------------------------------------------------------

    async def _connect(self) -> Any:
        """Open and return a new connection (and make sure the table exists)."""
        raise NotImplementedError

    async def _close_conn(self, conn: Any) -> None:
        """Close CONN, quietly, without waiting long."""
        raise NotImplementedError

    def _is_connection_error(self, exc: BaseException, conn: Any) -> bool:
        """Did EXC happen because the connection broke (rather than the query being refused)?"""
        raise NotImplementedError

    def _is_full(self, exc: BaseException) -> bool:
        """Did EXC happen because the database has no room for the write (disk full, out of memory)?"""
        return False

    async def _ping(self, conn: Any) -> None:
        """One cheap round trip on CONN (SELECT 1, PING)."""
        raise NotImplementedError

    def _deleter(self, keys: Sequence[tuple[bytes, bytes]]) -> Callable[[Any], Awaitable[Any]] | None:
        """What deletes the jobs of KEYS in one transaction, given a connection; None if none of them
        can be in the store. The hot path of settle(): a settlement that only deletes jobs."""
        raise NotImplementedError

    def _settler(self, batch: Settlement) -> Callable[[Any], Awaitable[Any]]:
        """What writes BATCH (any settlement) in one transaction, given a connection."""
        raise NotImplementedError

    async def _read_extras(self, conn: Any, now: float) -> Extras:
        """The results not expired at NOW (deleting the others), the failed jobs and the policies, on CONN."""
        raise NotImplementedError

    def _describe(self) -> str:
        """Where we connect, for log lines (no password)."""
        return self.name

    def where(self) -> str:
        return self._describe()

    # -- the machinery -----------------------------------------------------------------------

    async def replay(self) -> list[StoredJob]:
        """Every job stored: the backend's replay_batches() streams them, this gathers them."""
        out: list[StoredJob] = []
        async for batch in self.replay_batches():
            out.extend(batch)
        return out

    async def ping(self) -> None:
        await self._call("ping", self._ping)

    async def settle(self, batch: Settlement) -> None:
        try:
            await self._settle_once(batch)
        except NoRoomError:
            alone = deletions(batch)
            if alone and alone != batch:  # finished jobs are still deleted; the writes wait for room
                await self._settle_once(alone)
            raise

    async def _settle_once(self, batch: Settlement) -> None:
        if only_done(batch):
            op = self._deleter(batch.done) if batch.done else None
            if op is not None:
                await self._call("done", op)
        else:
            await self._call("settle", self._settler(batch))

    async def replay_extras(self) -> Extras:
        return await self._call("replay", lambda conn: self._read_extras(conn, time.time()), timeout=0)

    async def open(self) -> None:
        async with self._lock:
            await self._ensure(first=True)

    async def close(self) -> None:
        async with self._lock:
            if self._unsettled and self._conn is None:
                try:  # one last chance to delete them
                    await self._ensure(first=True)
                except Exception:  # noqa: BLE001 - said below
                    pass
            if self._unsettled:
                log.error("%s: %d job(s) answered QUEUE_ERROR may be in %s after all and run after a restart "
                          "(the database could not be reached to delete them)", self.name, len(self._unsettled),
                          self._describe())
            if self._conn is not None:
                conn, self._conn = self._conn, None
                await self._close_conn(conn)

    async def _drop(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._discard(conn)

    async def _discard(self, conn: Any) -> None:
        try:
            await asyncio.wait_for(self._close_conn(conn), 1.0)
        except Exception:  # noqa: BLE001 - the connection is already broken
            pass

    async def _ensure(self, first: bool = False) -> Any:
        """The connection, made now if there is none (the first of a start-up attempt ignores the
        backoff and logs nothing: the server logs its own attempts). A new connection first deletes
        the unsettled keys."""
        if self._conn is not None:
            return self._conn
        now = time.monotonic()
        if not first and now < self._retry_at:
            raise StoreError(f"{self.name}: no connection to {self._describe()} "
                             f"(next attempt in {self._retry_at - now:.1f}s)", reported=True,
                             retry_in=self._retry_at - now)
        doing = "connect to"
        try:
            conn = await asyncio.wait_for(self._connect(), self.connect_timeout + 1.0)
            if self._unsettled:
                doing = "delete the jobs answered QUEUE_ERROR on"
                try:
                    await self._forget_unsettled(conn)
                except BaseException:
                    await self._discard(conn)
                    raise
        except Exception as exc:
            if first and isinstance(exc, QueueConfigError):
                raise  # this will never work: refuse at once
            self._backoff = min(self.backoff_max, max(self.backoff_min, self._backoff * 2))
            self._retry_at = time.monotonic() + self._backoff
            if self._down_since is None:
                self._down_since = now
            if not first:
                log.error("%s: cannot %s %s: %s (next attempt in %.1fs)", self.name, doing, self._describe(),
                          _what(exc), self._backoff)
            raise StoreError(f"{self.name}: cannot {doing} {self._describe()}: {_what(exc)}", reported=not first,
                             retry_in=self._backoff) from exc
        self._conn = conn
        if self._down_since is not None:
            log.warning("%s: reconnected to %s after %.1fs", self.name, self._describe(),
                        time.monotonic() - self._down_since)
            self._down_since = None
        self._backoff = 0.0
        return conn

    async def _forget_unsettled(self, conn: Any) -> None:
        """Delete the unsettled keys on CONN: their submitters were told the jobs were not created."""
        keys = list(self._unsettled)
        op = self._deleter(keys)
        if op is not None:
            await asyncio.wait_for(op(conn), self.op_timeout or None)
        for key in keys:
            self._unsettled.pop(key, None)
        log.warning("%s: deleted %d job(s) that were answered QUEUE_ERROR when the connection broke before the "
                    "database's reply (they may have been stored)", self.name, len(keys))

    async def _call(self, what: str, op: Callable[[Any], Awaitable[T]], timeout: float | None = None,
                    writes: Sequence[StoredJob] = ()) -> T:
        """Run OP(connection) under the lock, with a timeout; reconnect and retry once if the link broke.

        WRITES: the jobs OP adds, remembered as unsettled if the call fails after one of its attempts
        may have reached the database."""
        timeout = self.op_timeout if timeout is None else timeout
        async with self._lock:
            unknown = False  # an attempt broke off after it may have reached the database
            try:
                for attempt in (1, 2):
                    conn = await self._ensure()
                    try:
                        if timeout:
                            result = await asyncio.wait_for(op(conn), timeout)
                        else:
                            result = await op(conn)
                    except asyncio.CancelledError:
                        unknown = True
                        await self._drop()
                        raise
                    except Exception as exc:  # noqa: BLE001 - every failure becomes StoreError
                        if self._is_full(exc):
                            raise self._no_room(what, exc) from exc
                        timed_out = isinstance(exc, asyncio.TimeoutError | TimeoutError)
                        if not (timed_out or self._is_connection_error(exc, conn)):
                            log.error("%s: %s failed: %s", self.name, what, _what(exc))
                            raise StoreError(f"{self.name}: {what} failed: {_what(exc)}") from exc
                        unknown = True
                        if self._down_since is None:
                            self._down_since = time.monotonic()
                        retry = attempt == 1 and not timed_out
                        log.warning("%s: %s failed, connection to %s lost: %s%s", self.name, what,
                                    self._describe(), _what(exc), "; reconnecting" if retry else "")
                        await self._drop()
                        if retry:
                            continue
                        raise StoreError(f"{self.name}: {what} failed: {_what(exc)}") from exc
                    if writes and self._full_since is not None:
                        log.warning("%s: %s has room again after %.1fs; background jobs are stored again", self.name,
                                    self._describe(), time.monotonic() - self._full_since)
                        self._full_since = None
                    return result
            except BaseException:
                if unknown and writes and self.replies_can_be_lost:
                    for job in writes:
                        self._unsettled[job.key] = None
                raise
        raise AssertionError("unreachable")

    def _no_room(self, what: str, exc: BaseException) -> NoRoomError:
        """EXC says the database has no room: log it if it is new; the StoreError to raise."""
        if self._full_since is None:
            self._full_since = time.monotonic()
            log.error("%s: no room in %s: %s; background jobs get QUEUE_ERROR until there is room%s", self.name,
                      self._describe(), _what(exc), self._full_note())
        return NoRoomError(f"{self.name}: {what} failed: no room in {self._describe()}: {_what(exc)}", reported=True)

    def _full_note(self) -> str:
        """What the no-room log line adds about deletes (a backend that keeps a reserve says so)."""
        return ""


def _what(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
