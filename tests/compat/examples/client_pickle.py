# ruff: noqa
# python-gearman 2.x docs, client.rst: "Send/receive Python objects (not just byte strings)".
# Changes: the import. The last two lines (marked) are added so the test can see the result.
import geartrain.compat.gearman as gearman

# By default, GearmanClient's can only send off byte-strings
# If we want to be able to send out Python objects, we can specify a data encoder
# This will automatically convert byte strings <-> Python objects for ALL commands that have the 'data' field
#
# See http://gearman.org/index.php?id=protocol for client commands that send/receive 'opaque data'
import pickle

class PickleDataEncoder(gearman.DataEncoder):
    @classmethod
    def encode(cls, encodable_object):
        return pickle.dumps(encodable_object)

    @classmethod
    def decode(cls, decodable_string):
        return pickle.loads(decodable_string)

class PickleExampleClient(gearman.GearmanClient):
    data_encoder = PickleDataEncoder

my_python_object = {'hello': 'there'}

gm_client = PickleExampleClient(['localhost:4730'])
gm_client.submit_job("task_name", my_python_object)

request = gm_client.submit_job("task_name", my_python_object)  # added for the test
print(type(request.result).__name__, sorted(request.result.items()))  # added for the test
