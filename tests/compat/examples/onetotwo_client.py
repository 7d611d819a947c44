# ruff: noqa
# python-gearman 2.x docs, 1to2.rst: "Client (single task)" and "Client (multiple tasks)", the 2.x halves.
# Changes: the import. The print lines (marked) are added so the test can see the results.
import geartrain.compat.gearman as gearman

# python-gearman 2.x
new_client = gearman.GearmanClient(['localhost:4730'])
current_request = new_client.submit_job('echo', 'foo')
new_result = current_request.result
print("single", repr(new_result))  # added for the test

# python-gearman 2.x
new_client = gearman.GearmanClient(['localhost:4730'])
new_jobs = [
    dict(task='echo', data='foo'),
    dict(task='echo', data='bar'),
]

completed_requests = new_client.submit_multiple_jobs(new_jobs)
for current_request in completed_requests:
    assert current_request.result == current_request.job.data
print("multiple", [r.result for r in completed_requests])  # added for the test
