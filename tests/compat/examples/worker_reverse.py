# ruff: noqa
# python-gearman 2.x docs, worker.rst: "Setting up a basic worker that reverses a given byte-string".
# Changes: the import; "".join(...) around reversed(...): the docs return the reversed() iterator, which
# no encoder can send (python-gearman 2.0.2 failed the job with a TypeError too).
import geartrain.compat.gearman as gearman

gm_worker = gearman.GearmanWorker(['localhost:4730'])

# See gearman/job.py to see attributes on the GearmanJob
# Send back a reversed version of the 'data' string
def task_listener_reverse(gearman_worker, gearman_job):
    return "".join(reversed(gearman_job.data))

# gm_worker.set_client_id is optional
gm_worker.set_client_id('your_worker_client_id_name')
gm_worker.register_task('reverse', task_listener_reverse)

# Enter our work loop and call gm_worker.after_poll() after each time we timeout/see socket activity
gm_worker.work()
