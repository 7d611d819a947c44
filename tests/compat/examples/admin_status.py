# ruff: noqa
# python-gearman 2.x docs, admin_client.rst: "Checking server state".
# Changes: the import. The print lines (marked) are added so the test can see the answers.
import geartrain.compat.gearman as gearman

gm_admin_client = gearman.GearmanAdminClient(['localhost:4730'])

# Inspect server state
status_response = gm_admin_client.get_status()
version_response = gm_admin_client.get_version()
workers_response = gm_admin_client.get_workers()

print("status", repr(status_response))  # added for the test
print("version", repr(version_response))  # added for the test
print("workers", repr(workers_response))  # added for the test
