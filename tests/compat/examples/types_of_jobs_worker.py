# ruff: noqa
# python-gearman 2.x docs, types_of_jobs.rst: "Sample Code", Worker.
# Changes: the import; print() for Python 3.
import geartrain.compat.gearman as gearman
import time


def delayed_reverse(worker, job):
    start_time = time.time()
    et = lambda: time.time() - start_time

    print('Received job `%s`, will run for 6 seconds' % job.data)

    time.sleep(2)
    print('Time elapsed = %.2f, updating status to 1/3' % et())
    worker.send_job_status(job, 1, 3)

    time.sleep(1)
    print('Time elapsed = %.2f, sent half-way data' % et())
    worker.send_job_data(job, 'half way data')

    time.sleep(1)
    print('Time elapsed = %.2f, updating status to 2/3' % et())
    worker.send_job_status(job, 2, 3)

    time.sleep(2)
    print('Time elapsed = %.2f, updating status to 3/3 and returning' % et())

    return job.data[::-1]


gearman_worker = gearman.GearmanWorker(['localhost:4730'])
gearman_worker.register_task('delayed_reverse', delayed_reverse)
gearman_worker.work()
