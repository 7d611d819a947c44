# ruff: noqa
# python-gearman 2.x docs, client.rst: "Sending a high priority, background, blocking call".
# Changes: the import; print() for Python 3; JOB_UNKNOWN imported (the docs use it unqualified).
import geartrain.compat.gearman as gearman
from geartrain.compat.gearman import JOB_UNKNOWN


def check_request_status(job_request):
    if job_request.complete:
        print("Job %s finished!  Result: %s - %s" % (job_request.job.unique, job_request.state, job_request.result))
    elif job_request.timed_out:
        print("Job %s timed out!" % job_request.unique)
    elif job_request.state == JOB_UNKNOWN:
        print("Job %s connection failed!" % job_request.unique)


gm_client = gearman.GearmanClient(['localhost:4730', 'otherhost:4730'])

# See gearman/job.py to see attributes on the GearmanJobRequest
submitted_job_request = gm_client.submit_job("task_name", "arbitrary binary data", priority=gearman.PRIORITY_HIGH, background=True)

check_request_status(submitted_job_request)
