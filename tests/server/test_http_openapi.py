"""The JSON API answers as its OpenAPI description says (geartrain/server/dashboard/openapi.json, the one
copy, shipped in the package and served at /openapi.json): every documented path is served, and every
status, content type and body of the answers (errors included) is the documented one (checked with
jsonschema)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from importlib import resources

import jsonschema
import pytest

from geartrain.protocol.packets import T
from tests.conftest import free_port, start_geartrain, wait_port
from tests.interop.wire import Wire, wait_for
from tests.server.test_http import Foreground, Web, grab, submit_bg

SPEC_PATH = resources.files("geartrain.server").joinpath("dashboard/openapi.json")
SPEC = json.loads(SPEC_PATH.read_text())


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Web, dict[str, str]]]:
    """A server with a worker running one job, two queued jobs (one high priority) and a job in the failed-job
    registry."""
    port = free_port()
    server = start_geartrain(tmp_path_factory.mktemp("openapi"), "--http-port", str(port),
                             "--policy", "api_bad", "tries=2 delay=0")
    worker = None
    try:
        wait_port(port, server.proc)
        web = Web(server, port)
        worker = Wire(server.host, server.port)
        worker.send(T.SET_CLIENT_ID, b"worker-1")
        worker.send(T.CAN_DO, b"api_run")
        running = submit_bg(web, "api_run", b"r")
        assert grab(worker)[0].decode() == running
        queued = submit_bg(web, "api_wait", b"q1", X_Gearman_Priority="high")
        submit_bg(web, "api_wait", b"q2")
        with Wire(server.host, server.port) as bad:
            bad.send(T.CAN_DO, b"api_bad")
            submit_bg(web, "api_bad", b"b")
            for _ in range(2):  # both tries fail: the job goes to the registry
                bad.send(T.WORK_EXCEPTION, grab(bad)[0], b"no")
        assert wait_for(lambda: json.loads(web.request("GET", "/api/failed")[2])["total"] == 1, timeout=5)
        failed = str(json.loads(web.request("GET", "/api/failed")[2])["failed"][0]["id"])
        yield web, {"running": running, "queued": queued, "failed": failed}
    finally:
        if worker is not None:
            worker.close()
        server.stop()


def check(method: str, template: str, status: int, headers: dict[str, str], body: bytes) -> object:
    """Fail unless the answer is one the spec documents for METHOD TEMPLATE; return the decoded body."""
    operation = SPEC["paths"][template][method.lower()]
    assert str(status) in operation["responses"], f"{method} {template}: status {status} not documented"
    response = operation["responses"][str(status)]
    media = headers["content-type"].split(";")[0].strip()
    assert media in response.get("content", {}), f"{method} {template} {status}: {media} not documented"
    if media != "application/json":
        return body
    value = json.loads(body)
    schema = {**response["content"][media]["schema"], "components": SPEC["components"]}
    jsonschema.Draft202012Validator(schema).validate(value)
    return value


def test_spec_is_served_and_well_formed(busy: tuple[Web, dict[str, str]]) -> None:
    web, _ = busy
    status, headers, body = web.request("GET", "/openapi.json")
    assert status == 200 and json.loads(body) == SPEC
    assert SPEC["openapi"].startswith("3.1")
    ids = [op["operationId"] for item in SPEC["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    for schema in SPEC["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    refs = set(re.findall(r'"#/components/schemas/(\w+)"', SPEC_PATH.read_text()))
    assert refs <= set(SPEC["components"]["schemas"])


def test_every_documented_get_answers_as_documented(busy: tuple[Web, dict[str, str]]) -> None:
    web, jobs = busy
    values = {"name": "api_wait", "handle": jobs["queued"], "id": jobs["failed"]}
    served = 0
    for template, item in SPEC["paths"].items():
        if "get" not in item:
            continue
        path = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)
        status, headers, body = web.request("GET", path)
        assert status == 200, (path, body)
        check("GET", template, status, headers, body)
        served += 1
    assert served == 16  # 9, 5 of what outlives a job, 2 health checks


def test_listings_match_the_state(busy: tuple[Web, dict[str, str]]) -> None:
    web, jobs = busy
    functions = check("GET", "/api/functions", *web.request("GET", "/api/functions"))
    by_name = {f["name"]: f for f in functions["functions"]}
    assert by_name["api_run"]["running"] == 1 and by_name["api_run"]["workers"] == 1
    assert by_name["api_wait"]["queued"] == {"high": 1, "normal": 1, "low": 0}
    assert by_name["api_wait"]["waiting"] == 2 and by_name["api_wait"]["counters"]["submitted"] == 2
    workers = check("GET", "/api/workers", *web.request("GET", "/api/workers"))["workers"]
    assert [(w["client_id"], w["functions"], w["running"]) for w in workers] == \
        [("worker-1", ["api_run"], [jobs["running"]])]
    running = check("GET", "/api/jobs", *web.request("GET", "/api/jobs?state=running"))["jobs"]
    assert [(j["handle"], j["state"], j["worker"]) for j in running] == [(jobs["running"], "running",
                                                                          workers[0]["id"])]
    page = check("GET", "/api/jobs", *web.request("GET", "/api/jobs?function=api_wait&limit=1"))
    assert page["more"] is True and [j["handle"] for j in page["jobs"]] == [jobs["queued"]]
    server = check("GET", "/api/server", *web.request("GET", "/api/server"))
    assert server["jobs"] == 3 and server["workers"] == 1 and server["http"] == [f"127.0.0.1:{web.port}"]


@pytest.mark.parametrize(("method", "path", "template", "status"), [
    ("GET", "/api/functions/nope", "/api/functions/{name}", 404),
    ("GET", "/api/jobs/H:nope:1", "/api/jobs/{handle}", 404),
    ("GET", "/api/jobs?limit=99999", "/api/jobs", 400),
    ("DELETE", "/api/jobs/H:nope:1", "/api/jobs/{handle}", 404),
    ("DELETE", "{running}", "/api/jobs/{handle}", 409),
    ("POST", "/", "/{function}", 404),
    ("POST", "/api_big", "/{function}", 400),
    ("GET", "/api/server", "/api/server", 403),  # a foreign Host (DNS rebinding)
    ("DELETE", "/api/jobs/H:nope:1", "/api/jobs/{handle}", 403),  # a foreign Host
    ("POST", "/api_huge", "/{function}", 413),
])
def test_errors_are_documented(busy: tuple[Web, dict[str, str]], method: str, path: str, template: str,
                               status: int) -> None:
    web, jobs = busy
    headers = {}
    if path == "{running}":
        path = f"/api/jobs/{jobs['running']}"
    if path == "/api_big":
        headers = {"X-Gearman-Unique": "u" * 100, "X-Gearman-Background": "true"}
    body = b"" if method == "POST" else None
    if path == "/api_huge":
        body = b"h" * (16 * 1024 * 1024 + 1)
    if status == 403:
        headers = {"Host": "evil.example"}
    got = web.request(method, path, body, headers)
    assert got[0] == status
    assert check(method, template, *got)["status"] == status


def test_cancel_answers_as_documented(busy: tuple[Web, dict[str, str]]) -> None:
    web, _ = busy
    handle = submit_bg(web, "api_cancel", b"c")
    body = check("DELETE", "/api/jobs/{handle}", *web.request("DELETE", f"/api/jobs/{handle}"))
    assert body["state"] == "cancelled"
    assert wait_for(lambda: web.request("GET", f"/api/jobs/{handle}")[0] == 404, timeout=5)


@pytest.mark.parametrize("command", [T.WORK_EXCEPTION, T.WORK_FAIL])
def test_a_failed_job_answers_as_documented(busy: tuple[Web, dict[str, str]], command: int) -> None:
    web, _ = busy
    for accept in ("application/json", "*/*"):
        with Wire(web.server.host, web.server.port) as worker:
            worker.send(T.CAN_DO, b"api_fail")
            fg = Foreground(web, "/api_fail", b"f", {"Accept": accept})
            fg.start()
            handle = grab(worker)[0]
            if command == T.WORK_EXCEPTION:
                worker.send(T.WORK_EXCEPTION, handle, b"KeyError: 'k'")
            worker.send(T.WORK_FAIL, handle)
            got = fg.get()
        assert got[0] == 500
        value = check("POST", "/{function}", *got)
        if accept == "application/json":
            assert value["handle"] == handle.decode()  # type: ignore[index]
            assert ("exception" in value) is (command == T.WORK_EXCEPTION)  # type: ignore[operator]


def test_background_submission_answers_as_documented(busy: tuple[Web, dict[str, str]]) -> None:
    web, _ = busy
    got = web.request("POST", "/api_doc", b"d", {"X-Gearman-Background": "true"})
    assert got[0] == 200
    check("POST", "/{function}", *got)
    for name in SPEC["paths"]["/{function}"]["post"]["responses"]["200"]["headers"]:
        assert name.lower() in got[1]
