"""Exceptions raised by the client and worker libraries."""

from __future__ import annotations


class GearmanError(Exception):
    """Base class of every geartrain client/worker error."""


class ServerError(GearmanError):
    """The job server answered with an ERROR packet (CODE and TEXT as bytes)."""

    def __init__(self, code: bytes, text: bytes) -> None:
        super().__init__(f"{code.decode(errors='replace')}: {text.decode(errors='replace')}")
        self.code = code
        self.text = text


class NoServerAvailable(GearmanError, ConnectionError):
    """No job server could be reached (all are down or backing off)."""


class ConnectionLost(GearmanError, ConnectionError):
    """The connection to a server dropped while it was needed."""


class JobLost(ConnectionLost):
    """The server that accepted a job (sent JOB_CREATED) went away before the job's result came back.

    The job may or may not have run; it is not resubmitted, since that could run it twice.
    """

    def __init__(self, handle: bytes, server: str) -> None:
        super().__init__(f"connection to {server} lost after it accepted job {handle.decode(errors='replace')}")
        self.handle = handle
        self.server = server


class JobsNotCreated(GearmanError):
    """Background jobs were not accepted by a server (no JOB_CREATED): refused, lost with their connection, or not
    acknowledged in time. ``jobs`` lists them; each job's ``error`` says why."""

    def __init__(self, jobs: list) -> None:
        first = jobs[0].error if jobs else None
        super().__init__(f"{len(jobs)} background job(s) not created"
                         + (f" (the first: {first})" if first is not None else ""))
        self.jobs = jobs


class JobFailed(GearmanError):
    """The job ended with WORK_FAIL."""

    def __init__(self, handle: bytes, message: str = "job failed") -> None:
        super().__init__(message)
        self.handle = handle


class JobException(JobFailed):
    """The worker raised an exception: WORK_EXCEPTION, whose payload is ``data``."""

    def __init__(self, handle: bytes, data: bytes) -> None:
        super().__init__(handle, data.decode(errors="replace") or "worker raised an exception")
        self.data = data


class JobUnknown(GearmanError, LookupError):
    """No server knows the job asked for (``AsyncClient.result``): it never was, or it ended and its outcome is
    not kept (a policy with keep=SECONDS keeps a background job's)."""


class JobTimeout(GearmanError, TimeoutError):
    """Waiting for a job took longer than its timeout (the job itself may still run)."""


class WorkFailed(Exception):
    """Raise this in a worker function to fail the job with a plain WORK_FAIL (no exception data)."""
