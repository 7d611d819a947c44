# ruff: noqa
# python-gearman 2.x docs, admin_client.rst: "Checking server response time".
# Changes: the import. The print line (marked) is added so the test can see the answer.
import geartrain.compat.gearman as gearman

gm_admin_client = gearman.GearmanAdminClient(['localhost:4730'])
response_time = gm_admin_client.ping_server()

print("ping", type(response_time).__name__, response_time >= 0)  # added for the test
