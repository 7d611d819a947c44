"""python-gearman 2.x's documentation examples, run (as unchanged as Python 3 allows, see each file's
header) with ``import geartrain.compat.gearman as gearman``, against our server and the C gearmand."""

from __future__ import annotations

import ast
import json
import re

import geartrain.compat.gearman as gearman
from tests.conftest import ROOT

from ._support import run_example, running_example

FINISHED = re.compile(r"^Job ([0-9a-f]{32}) finished!  Result: (\w+) - (.*)$")


def test_client_blocking_submit_job(any_server, tmp_path):
    # The client lists a second, unreachable server: whichever it picks first, the job must get through.
    with running_example("helper_echo_worker.py", any_server, tmp_path, "task_name"):
        out = run_example("client_blocking.py", any_server, tmp_path)
    match = FINISHED.match(out.strip())
    assert match, out
    assert match.group(2, 3) == ("COMPLETE", "arbitrary binary data")


def test_client_background_high_priority(any_server, tmp_path):
    out = run_example("client_background.py", any_server, tmp_path)
    match = FINISHED.match(out.strip())
    assert match, out
    # A background request is complete once the server accepted it; it never carries a result.
    assert match.group(2, 3) == ("CREATED", "None")
    status = {row["task"]: row for row in gearman.GearmanAdminClient([any_server.address]).get_status()}
    assert status["task_name"]["queued"] == 1


def test_client_submit_multiple_jobs(any_server, tmp_path):
    with running_example("helper_echo_worker.py", any_server, tmp_path, "other_task"):
        out = run_example("client_multiple.py", any_server, tmp_path)
    results = [FINISHED.match(line) for line in out.splitlines()]
    assert all(results) and len(results) == 2, out
    assert [m.group(2, 3) for m in results] == [("COMPLETE", "binary data"), ("COMPLETE", "other binary data")]


def test_client_pickle_data_encoder(any_server, tmp_path):
    with running_example("helper_echo_worker.py", any_server, tmp_path, "task_name"):
        out = run_example("client_pickle.py", any_server, tmp_path)
    assert out.strip() == "dict [('hello', 'there')]"


def test_worker_reverse(any_server, tmp_path):
    with running_example("worker_reverse.py", any_server, tmp_path, "reverse"):
        client = gearman.GearmanClient([any_server.address])
        request = client.submit_job("reverse", "Hello World!", poll_timeout=20)
        workers = gearman.GearmanAdminClient([any_server.address]).get_workers()
    assert request.state == gearman.JOB_COMPLETE
    assert request.result == "!dlroW olleH"
    named = [w for w in workers if w["client_id"] == "your_worker_client_id_name"]
    assert len(named) == 1 and named[0]["tasks"] == ("reverse",)


def test_worker_inflight_updates(any_server, tmp_path):
    with running_example("worker_inflight.py", any_server, tmp_path, "reverse"):
        client = gearman.GearmanClient([any_server.address])
        request = client.submit_job("reverse", "abc", poll_timeout=20)
    assert request.state == gearman.JOB_COMPLETE
    assert list(request.data_updates) == ["c", "b", "a"]
    assert (request.status["numerator"], request.status["denominator"]) == (3, 3)
    assert request.result == ""  # the callback returns None: WORK_COMPLETE with no data


class JSONDataEncoder(gearman.DataEncoder):
    @classmethod
    def encode(cls, encodable_object):
        return json.dumps(encodable_object)

    @classmethod
    def decode(cls, decodable_string):
        return json.loads(decodable_string)


class JSONClient(gearman.GearmanClient):
    data_encoder = JSONDataEncoder


def test_worker_json_encoder_and_after_poll(any_server, tmp_path):
    with running_example("worker_json.py", any_server, tmp_path, "add_numbers"):
        client = JSONClient([any_server.address])
        request = client.submit_job("add_numbers", {"numbers": [1, 2, 3.5]}, poll_timeout=20)
    assert request.state == gearman.JOB_COMPLETE
    assert request.result["sum"] == 6.5
    assert request.result["rollbacks_so_far"] >= 1  # after_poll ran (and called the rollback) before the job


def test_admin_client_server_state(any_server, tmp_path):
    with running_example("worker_reverse.py", any_server, tmp_path, "reverse"):
        out = run_example("admin_status.py", any_server, tmp_path)
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines())
    status = ast.literal_eval(lines["status"])
    assert {"task": "reverse", "queued": 0, "running": 0, "workers": 1} in status
    assert ast.literal_eval(lines["version"]).startswith("OK ")
    workers = ast.literal_eval(lines["workers"])
    assert any(w["tasks"] == ("reverse",) and w["client_id"] == "your_worker_client_id_name" for w in workers)


def test_admin_client_ping(any_server, tmp_path):
    assert run_example("admin_ping.py", any_server, tmp_path).strip() == "ping float True"


def test_1to2_client_and_worker(any_server, tmp_path):
    with running_example("onetotwo_worker.py", any_server, tmp_path, "echo") as worker:
        out = run_example("onetotwo_client.py", any_server, tmp_path)
    assert out.splitlines() == ["single 'foo'", "multiple ['foo', 'bar']"]
    # The overridden hooks ran once per job (3 jobs): on_job_execute and on_job_complete.
    assert worker.output.count("Job started") == 3
    assert worker.output.count("Job complete, CAN stop") == 3


LINE = re.compile(r"^Time elpased = [\d.]+, Known = (True|False), Running = (True|False), "
                  r"Status = (\d)/(\d), data = deque\((.*)\)$")


def test_types_of_jobs_status_polling(any_server, tmp_path):
    with running_example("types_of_jobs_worker.py", any_server, tmp_path, "delayed_reverse") as worker:
        out = run_example("types_of_jobs_client.py", any_server, tmp_path)
    rows = [LINE.match(line) for line in out.splitlines()]
    assert len(rows) == 8 and all(rows), out
    known = [m for m in rows if m.group(1) == "True"]
    assert known and rows[0].group(1) == "True", out
    numerators = [int(m.group(3)) for m in known]
    assert numerators == sorted(numerators), out  # progress only goes forward
    assert all(int(m.group(3)) < 3 for m in rows), out  # the docs: the client never sees 3/3
    assert any("half way data" in m.group(5) for m in rows), out  # the WORK_DATA reached a status request
    assert "Received job `Hello World!`" in worker.output


def test_the_readme_points_python_gearman_users_here():
    """Someone moving from python-gearman reads the README's top and its Libraries section: both name the API."""
    readme = (ROOT / "README.md").read_text()
    top = readme.split("\n## ", 1)[0]
    libraries = readme.split("\n## Libraries and command line\n", 1)[1].split("\n## ", 1)[0]
    for part in (top, libraries):
        assert "geartrain.compat.gearman" in part and "(docs/compat.md)" in part
    assert "python-gearman" in top
