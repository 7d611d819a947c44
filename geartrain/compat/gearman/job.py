"""GearmanJob (what a job is) and GearmanJobRequest (a client's view of one submitted job)."""

from __future__ import annotations

import collections
from typing import Any

from .constants import JOB_COMPLETE, JOB_CREATED, JOB_FAILED, JOB_UNKNOWN, PRIORITY_NONE


class GearmanJob:
    """A job: the server connection it lives on, its handle, task, unique and data.

    On a worker, ``data`` is the decoded payload, ``task`` the name the task was registered under, and
    ``handle`` and ``unique`` are str.
    """

    def __init__(self, connection: Any, handle: Any, task: Any, unique: Any, data: Any) -> None:
        self.connection = connection
        self.handle = handle
        self.task = task
        self.unique = unique
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        return dict(task=self.task, job_handle=self.handle, unique=self.unique, data=self.data)

    def __repr__(self) -> str:
        return (f"<GearmanJob connection/handle=({self.connection!r}, {self.handle!r}), task={self.task}, "
                f"unique={self.unique}, data={self.data!r}>")


class GearmanJobRequest:
    """A client's request for a job and everything the server told it about that job.

    ``state`` is one of JOB_UNKNOWN, JOB_PENDING, JOB_CREATED, JOB_FAILED, JOB_COMPLETE; ``result``
    holds WORK_COMPLETE's data, ``exception`` WORK_EXCEPTION's, ``data_updates`` / ``warning_updates``
    the WORK_DATA / WORK_WARNING payloads in order, ``status`` the last WORK_STATUS or STATUS_RES.
    ``error`` is (code, text) when the server refused the submission with an ERROR packet.
    """

    def __init__(self, gearman_job: GearmanJob, initial_priority: Any = PRIORITY_NONE, background: bool = False,
                 max_attempts: int = 1) -> None:
        self.gearman_job = gearman_job
        self.priority = initial_priority
        self.background = background
        self.connection_attempts = 0
        self.max_connection_attempts = max_attempts
        self.initialize_request()

    def initialize_request(self) -> None:
        self.result: Any = None
        self.exception: Any = None
        self.error: tuple[bytes, bytes] | None = None
        self.warning_updates: collections.deque[Any] = collections.deque()
        self.data_updates: collections.deque[Any] = collections.deque()
        self.status: dict[str, Any] = {}
        self.state = JOB_UNKNOWN
        self.timed_out = False
        self._status_seq = 0
        self._status_seq_asked = 0

    def reset(self) -> None:
        """Forget all progress and the server assignment, so the request can be submitted afresh."""
        self.initialize_request()
        self.gearman_job.connection = None
        self.gearman_job.handle = None

    @property
    def status_updates(self) -> collections.deque[tuple[int, int]]:
        """Deprecated since python-gearman 2.0.1: (numerator, denominator) of the last status, if any."""
        out: collections.deque[tuple[int, int]] = collections.deque()
        if self.status:
            out.append((self.status.get("numerator", 0), self.status.get("denominator", 0)))
        return out

    @property
    def server_status(self) -> dict[str, Any]:
        """Deprecated since python-gearman 2.0.1: the same as ``status``."""
        return self.status

    @property
    def job(self) -> GearmanJob:
        return self.gearman_job

    @property
    def unique(self) -> Any:
        """The job's unique (python-gearman's docs use ``job_request.unique``)."""
        return self.gearman_job.unique

    @property
    def complete(self) -> bool:
        """True when there is nothing more to wait for: a background job once accepted, a foreground one once done."""
        if self.background:
            return self.state in (JOB_CREATED, JOB_FAILED, JOB_COMPLETE)
        return self.state in (JOB_FAILED, JOB_COMPLETE)

    @property
    def connection_failed(self) -> bool:
        """True when the request's connection was lost (or never made) before it finished."""
        return self.state == JOB_UNKNOWN and self.connection_attempts > 0

    def __repr__(self) -> str:
        return (f"<GearmanJobRequest task={self.job.task!r}, unique={self.job.unique!r}, priority={self.priority!r}, "
                f"background={self.background!r}, state={self.state!r}, timed_out={self.timed_out!r}>")
