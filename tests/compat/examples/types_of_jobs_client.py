# ruff: noqa
# python-gearman 2.x docs, types_of_jobs.rst: "Sample Code", Client.
# Changes: the import; print() and range() for Python 3.
import geartrain.compat.gearman as gearman
import time


gm_client = gearman.GearmanClient(['localhost:4730'])

initial_request = gm_client.submit_job(
    "delayed_reverse",         # queue name
    "Hello World!",            # data
    background=False,          # False --> online job, True --> offline job
    wait_until_complete=False  # False --> don't block, True --> block
)


start_time = time.time()


def check_job_status(initial_request):
    # Create a request for the gearman server to update the original job's status
    update_job = gearman.job.GearmanJob(gm_client.connection_list[0],
        initial_request.job.handle,
        None,
        None,
        None
    )
    update_request = gearman.job.GearmanJobRequest(update_job)
    update_request.state = 'CREATED'

    result = gm_client.get_job_status(update_request)

    print(('Time elpased = %.2f, Known = %s, Running = %s, ' +
            'Status = %d/%d, data = %r'
        ) % (
            time.time() - start_time,
            result.status['known'],
            result.status['running'],
            result.status['numerator'],
            result.status['denominator'],
            result.data_updates
    ))

for i in range(8):
    check_job_status(initial_request)
    time.sleep(1)
