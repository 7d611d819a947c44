# ruff: noqa
# NOT from the docs: a worker for the client examples. It echoes every job's payload, byte for byte
# (BytesDataEncoder), for the tasks the docs' client examples submit.
import geartrain.compat.gearman as gearman


class EchoWorker(gearman.GearmanWorker):
    data_encoder = gearman.BytesDataEncoder


def echo(gearman_worker, gearman_job):
    return gearman_job.data


gm_worker = EchoWorker(['localhost:4730'])
for task in ("task_name", "other_task"):
    gm_worker.register_task(task, echo)
gm_worker.work()
