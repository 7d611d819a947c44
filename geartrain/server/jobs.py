"""The server's records: a Job, a Function (its three queues and counters) and a Peer (one connection,
with its client and worker roles).

Plain slotted objects with no behaviour of their own beyond tiny helpers: server/lifecycle.py changes a
job's state and the counters and indexes that follow it, the handlers (submitting, workers, results,
timers) the rest. Kept apart so metrics, admin and tests can read them without pulling in the logic.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from ..protocol.admin import gearmand_bucket

#: upper bounds (seconds) of the queue-wait and run-time histogram buckets kept per Function (the last
#: slot of each histogram counts everything above the last bound); server/metrics.py publishes them
TIME_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                900.0, 3600.0)

# Job.state values (server/lifecycle.py changes them, and nothing else)
DONE = 0  # finished, cancelled or dropped; may still sit in a deque (lazy deletion)
QUEUED = 1  # in its function's queue, runnable
RUNNING = 2  # assigned to a worker
DELAYED = 3  # an epoch job waiting for its time (in the epoch heap)
PENDING = 4  # a background job waiting for the durable store to commit it
NEW = 5  # created, not yet placed (queued, delayed or pending)

#: how a run ended, for WorkerRole.ran: taken back (its worker left or timed out), WORK_COMPLETE, WORK_FAIL or
#: WORK_EXCEPTION
RAN_TAKEN_BACK, RAN_COMPLETE, RAN_FAILED = 0, 1, 2

STATE_NAMES = {DONE: "done", QUEUED: "queued", RUNNING: "running", DELAYED: "delayed", PENDING: "pending",
               NEW: "new"}


class Job:
    """One job: what to run, who waits for it, where it is.

    A million of them may sit in a queue, so a Job holds only what it needs (14 slots, no dict, no
    per-job list until a client attaches): no copy of the function name (``function.name``), no
    index key (the unique itself, see State), the rare reducer and run-at time in one ``reduce_when``
    tuple (None for most jobs), WORK_STATUS progress on the worker running it (``WorkerRole.progress``),
    and of the durable store only the key it was filed under (``store_key``, usually ``b""``)."""

    __slots__ = (
        "handle", "function", "unique", "data", "priority", "background", "reduce_when", "clients", "worker",
        "retries", "state", "store_key", "queued_at", "started_at", "history",
    )

    def __init__(self, handle: bytes, function: Function, unique: bytes, data: bytes, priority: int,
                 background: bool, reducer: bytes = b"", when: int = 0) -> None:
        self.handle = handle
        self.function = function
        self.unique = unique
        self.data = data
        self.priority = priority
        self.background = background
        #: (reducer, run-at epoch second) of a SUBMIT_REDUCE_JOB* or SUBMIT_JOB_EPOCH job; None for the rest
        self.reduce_when: tuple[bytes, int] | None = (reducer, when) if reducer or when else None
        # foreground connections waiting for the result (a peer may repeat); an empty tuple until the first
        self.clients: list[Peer] | tuple[()] = ()
        self.worker: Peer | None = None
        self.retries = 0  # times it came back from a worker; also tells a stale timeout from the current run
        self.state = NEW
        #: None: not in the durable store. Else it is, under (store_key or unique, function name): call
        #: Store.done with that key when it ends (store_key is b"" unless the store generated a key)
        self.store_key: bytes | None = None
        self.queued_at = 0.0  # State.now when it last became runnable (for the queue-wait histogram)
        self.started_at = 0.0  # State.now when a worker last took it (for the run-time histogram)
        #: its failed tries under a retry policy (store.base.Try each); None for a job that never failed so
        self.history: list[Any] | None = None

    @property
    def reducer(self) -> bytes:
        rw = self.reduce_when
        return rw[0] if rw is not None else b""

    @property
    def when(self) -> int:
        """The epoch second an epoch job runs at; 0 for one to run now."""
        rw = self.reduce_when
        return rw[1] if rw is not None else 0

    @property
    def progress(self) -> tuple[bytes, bytes] | None:
        """The last WORK_STATUS (numerator, denominator) of the run under way, if its worker sent one."""
        worker = self.worker
        if worker is None or not worker.as_worker.progress:
            return None
        return worker.as_worker.progress.get(self.handle)

    @property
    def numerator(self) -> bytes:
        progress = self.progress
        return progress[0] if progress is not None else b"0"

    @property
    def denominator(self) -> bytes:
        progress = self.progress
        return progress[1] if progress is not None else b"0"

    @property
    def store_id(self) -> tuple[bytes, bytes]:
        """What Store.done needs to find this job: (store_key or unique, function name), as StoredJob.key."""
        return (self.store_key or self.unique, self.function.name)

    def __repr__(self) -> str:
        return f"<Job {self.handle!r} {self.function.name!r} {STATE_NAMES[self.state]}>"


class Function:
    """One function name: three queues (HIGH, NORMAL, LOW), its workers and its counters."""

    __slots__ = (
        "name", "bucket", "queues", "queued", "delayed", "running", "workers", "sleepers", "maxqueue", "uniques",
        "submitted", "completed", "failed", "exceptions", "retried", "timeouts", "wait_hist", "wait_sum", "run_hist",
        "run_sum", "policy", "retry", "keep", "buried",
    )

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.bucket = gearmand_bucket(name)  # for listing functions in gearmand's order
        # deques hold jobs in FIFO order; cancelled jobs stay in place with state DONE (lazy deletion)
        self.queues: tuple[deque[Job], deque[Job], deque[Job]] = (deque(), deque(), deque())
        self.queued = [0, 0, 0]  # runnable jobs per priority (excludes lazily deleted ones)
        self.delayed = [0, 0, 0]  # epoch jobs not due yet, and store-pending jobs, per priority
        self.running = 0
        self.workers = 0  # registrations (CAN_DO twice counts twice, as gearmand)
        self.sleepers: OrderedDict[Peer, None] = OrderedDict()  # sleeping workers, longest asleep first
        self.maxqueue = [0, 0, 0]  # 0 = unlimited
        # its jobs by unique, for coalescing: the unique bytes the job holds anyway are the key, so the index
        # costs no object per job; unique "-" (coalesce by identical data) is keyed (data,)
        self.uniques: dict[bytes | tuple[bytes], Job] = {}
        # counters for metrics
        self.submitted = 0
        self.completed = 0
        self.failed = 0
        self.exceptions = 0
        self.retried = 0
        self.timeouts = 0
        # histograms: counts per TIME_BUCKETS slot (+1 for above the last) and the sum of the observed seconds
        self.wait_hist = [0] * (len(TIME_BUCKETS) + 1)
        self.wait_sum = 0.0
        self.run_hist = [0] * (len(TIME_BUCKETS) + 1)
        self.run_sum = 0.0
        # its policy (policy.Policy): its own if one was set (else None), and in effect (its own or the
        # server's): the retry policy if failed jobs are tried again (else None), the seconds a background
        # job's outcome is kept (0: not kept)
        self.policy: Any = None
        self.retry: Any = None
        self.keep = 0.0
        self.buried = 0  # jobs whose tries were spent, filed in the failed-job registry

    @property
    def total(self) -> int:
        """Jobs of this function in the server: queued, waiting for their time, or running."""
        q = self.queued
        d = self.delayed
        return q[0] + q[1] + q[2] + d[0] + d[1] + d[2] + self.running

    def has_runnable(self) -> bool:
        q = self.queued
        return bool(q[0] or q[1] or q[2])

    def __repr__(self) -> str:
        return f"<Function {self.name!r} queued={self.queued} running={self.running} workers={self.workers}>"


class ClientRole:
    """What a connection is as a client: the foreground jobs it waits for and how it wants failures told."""

    __slots__ = ("waiting", "exceptions")

    def __init__(self, exceptions: bool) -> None:
        self.waiting: dict[Job, None] = {}  # foreground jobs whose results it waits for, in order
        self.exceptions = exceptions  # it asked for WORK_EXCEPTION (OPTION_REQ exceptions, or --exceptions)


class WorkerRole:
    """What a connection is as a worker: its functions, its sleep, the wake-up it owes, the jobs it runs."""

    __slots__ = ("abilities", "funcs", "can", "rr", "sleeping", "noop_sent", "woken_for", "woken_seq", "jobs",
                 "progress", "stale", "ran")

    def __init__(self) -> None:
        self.abilities: list[Function] = []  # every CAN_DO, in order, repeats kept (for `workers`)
        self.funcs: list[Function] = []  # its distinct functions, in round-robin order
        self.can: dict[Function, float] = {}  # its distinct functions, each with its CAN_DO_TIMEOUT (0: none)
        self.rr = 0  # where the next grab starts in funcs
        self.sleeping = False  # it sent PRE_SLEEP and has not grabbed since
        self.noop_sent = False  # it was sent a NOOP for this sleep
        self.woken_for: Function | None = None  # the function a NOOP was sent for, until the worker grabs
        self.woken_seq = 0  # which wake-up that was (Workers.wake_heap's entry for it carries the same number)
        self.jobs: dict[bytes, Job] = {}  # running on this worker, by handle
        self.progress: dict[bytes, tuple[bytes, bytes]] = {}  # the last WORK_STATUS of its jobs, by handle
        self.stale: set[bytes] = set()  # handles taken away on timeout: late results are ignored
        self.ran = [0, 0, 0]  # its runs that ended, by how (RAN_TAKEN_BACK, RAN_COMPLETE, RAN_FAILED)


class Peer:
    """One connection as the job logic sees it: its output, and its two roles, as a client and as a worker.

    Any connection may submit jobs and register functions (gearmand allows both on one connection), so
    both roles exist from the start; each is a record of its own (``as_client``, ``as_worker``)."""

    __slots__ = ("id", "fd", "host", "client_id", "out", "holds", "big", "closed", "close_after", "transport",
                 "extra", "as_client", "as_worker")

    def __init__(self, id: int, fd: int = -1, host: str = "-", exceptions: bool = False) -> None:
        self.id = id
        self.fd = fd
        self.host = host
        self.client_id = b"-"  # SET_CLIENT_ID (shown by `workers`)
        self.out: list[Any] = []  # bytes (or Hold) waiting to be written
        self.holds = 0  # Holds in out, resolved or not (output is written only up to the first unresolved)
        self.big = False  # out holds a big payload as a part of its own (written with writelines, not joined)
        self.closed = False
        self.close_after = False  # close once the output is written
        self.transport: Any = None  # the connection layer's, untouched by state
        self.extra: Any = None  # for the connection layer (e.g. the Connection object)
        self.as_client = ClientRole(exceptions)
        self.as_worker = WorkerRole()

    def __repr__(self) -> str:
        return f"<Peer {self.id} fd={self.fd} {self.host}>"
