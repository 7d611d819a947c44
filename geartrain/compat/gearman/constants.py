"""Constants of the python-gearman 2.x API: default port, priorities and job request states.

The values are python-gearman's own (strings and None), so code that compares against literals such as
``'CREATED'`` keeps working.
"""

from __future__ import annotations

DEFAULT_GEARMAN_PORT = 4730

PRIORITY_NONE = None
PRIORITY_LOW = "LOW"
PRIORITY_HIGH = "HIGH"

#: Request state is unknown: not yet submitted, or its connection failed.
JOB_UNKNOWN = "UNKNOWN"
#: Request has been submitted and waits for its handle (JOB_CREATED).
JOB_PENDING = "PENDING"
#: Request has been accepted by the server (it has a handle).
JOB_CREATED = "CREATED"
#: Request ended with WORK_FAIL or WORK_EXCEPTION (or the server refused it with an ERROR).
JOB_FAILED = "FAILED"
#: Request ended with WORK_COMPLETE.
JOB_COMPLETE = "COMPLETE"
