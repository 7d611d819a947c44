"""python-gearman 2.x, on geartrain's protocol core: ``import geartrain.compat.gearman as gearman``.

The classes, methods, arguments, defaults, job request states and exceptions are python-gearman
2.0.2's (plus the later ``after_job``, ``get_pid``, ``cancel_job``, ``get_jobs``, ``get_unique_jobs``
and ``JOB_UNKNOWN`` export), so code written for it runs with a one-line import change.

Bytes and str (the one real difference, as python-gearman was Python 2 only): the default
``data_encoder`` is :class:`TextDataEncoder` — job data, results and updates may be given as ``str``
(sent UTF-8) or bytes, and are received as ``str`` (UTF-8; any undecodable byte survives a round trip
through ``surrogateescape``). Set ``data_encoder = BytesDataEncoder`` on a subclass to get ``bytes``.
Custom encoders (the documentation's JSON and pickle ones) receive ``bytes`` in ``decode`` and may
return ``str`` or ``bytes`` from ``encode``. Task names, uniques and handles are accepted as ``str``
or bytes; a worker's ``job.task`` is the object the task was registered with, ``job.handle`` and
``job.unique`` are ``str``.

Where 2.0.2 had bugs this follows its documentation instead: workers wake on NOOP and grab again
after each job (no minute-long stalls), WORK_EXCEPTION reaches ``request.exception`` (the client asks
for it with OPTION_REQ), finished requests are not kept (no leak), a dead connection gives JOB_UNKNOWN
instead of a KeyError, an ERROR reply fails the request instead of hanging it. See docs/compat.md.
"""

from __future__ import annotations

import logging

from . import admin_client, client, connection, connection_manager, constants, encoders, errors, job, util, worker
from .admin_client import GearmanAdminClient
from .client import GearmanClient
from .constants import (
    DEFAULT_GEARMAN_PORT,
    JOB_COMPLETE,
    JOB_CREATED,
    JOB_FAILED,
    JOB_PENDING,
    JOB_UNKNOWN,
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_NONE,
)
from .encoders import BytesDataEncoder, DataEncoder, NoopEncoder, TextDataEncoder
from .errors import (
    ConnectionError,
    ExceededConnectionAttempts,
    GearmanError,
    InvalidAdminClientState,
    InvalidClientState,
    InvalidWorkerState,
    ProtocolError,
    ServerUnavailable,
    UnknownCommandError,
)
from .job import GearmanJob, GearmanJobRequest
from .worker import GearmanWorker

#: The python-gearman API version this package follows.
__version__ = "2.0.2"

logging.getLogger("geartrain.compat.gearman").addHandler(logging.NullHandler())

__all__ = [
    "DEFAULT_GEARMAN_PORT",
    "JOB_COMPLETE",
    "JOB_CREATED",
    "JOB_FAILED",
    "JOB_PENDING",
    "JOB_UNKNOWN",
    "PRIORITY_HIGH",
    "PRIORITY_LOW",
    "PRIORITY_NONE",
    "BytesDataEncoder",
    "ConnectionError",
    "DataEncoder",
    "ExceededConnectionAttempts",
    "GearmanAdminClient",
    "GearmanClient",
    "GearmanError",
    "GearmanJob",
    "GearmanJobRequest",
    "GearmanWorker",
    "InvalidAdminClientState",
    "InvalidClientState",
    "InvalidWorkerState",
    "NoopEncoder",
    "ProtocolError",
    "ServerUnavailable",
    "TextDataEncoder",
    "UnknownCommandError",
    "admin_client",
    "client",
    "connection",
    "connection_manager",
    "constants",
    "encoders",
    "errors",
    "job",
    "util",
    "worker",
]
