# ruff: noqa
# python-gearman 2.x docs, worker.rst: "Send/receive Python objects and do work between polls".
# Changes: the import. The docs only define the classes; the marked lines at the end are added to run
# them (a stand-in for db_connections, a task, the work loop).
import geartrain.compat.gearman as gearman

# By default, GearmanWorker's can only send off byte-strings
# If we want to be able to send out Python objects, we can specify a data encoder
# This will automatically convert byte strings <-> Python objects for ALL commands that have the 'data' field
#
# See http://gearman.org/index.php?id=protocol for Worker commands that send/receive 'opaque data'
#
import json # Or similarly styled library
class JSONDataEncoder(gearman.DataEncoder):
    @classmethod
    def encode(cls, encodable_object):
        return json.dumps(encodable_object)

    @classmethod
    def decode(cls, decodable_string):
        return json.loads(decodable_string)

class DBRollbackJSONWorker(gearman.GearmanWorker):
    data_encoder = JSONDataEncoder

    def after_poll(self, any_activity):
        # After every select loop, let's rollback our DB connections just to be safe
        continue_working = True
        self.db_connections.rollback()
        return continue_working


class FakeDBConnections:  # added to run the example
    rollbacks = 0

    def rollback(self):
        self.rollbacks += 1


def add_numbers(gearman_worker, gearman_job):  # added to run the example
    return {"sum": sum(gearman_job.data["numbers"]), "rollbacks_so_far": gearman_worker.db_connections.rollbacks}


gm_worker = DBRollbackJSONWorker(['localhost:4730'])  # added to run the example
gm_worker.db_connections = FakeDBConnections()  # added to run the example
gm_worker.register_task('add_numbers', add_numbers)  # added to run the example
gm_worker.work()  # added to run the example
