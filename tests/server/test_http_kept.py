"""The HTTP API of what outlives a job, against a running server (its own process, real sockets): a job's outcome
by handle or unique, the policies, the failed-job registry, the jobs that ended lately; every answer checked
against dashboard/openapi.json, and the calls that change something under the admin permissions and the
Origin/Host checks of the other state-changing calls."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from geartrain.protocol.packets import T
from tests.conftest import free_port, start_geartrain, wait_port
from tests.interop.wire import wait_for
from tests.server.test_http import Web, grab, submit_bg
from tests.server.test_http_admin import ACL_TEXT, _request
from tests.server.test_http_openapi import check


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    port = free_port()
    server = start_geartrain(tmp_path_factory.mktemp("kept"), "--http-port", str(port),
                             "--policy", "keeps", "keep=600",
                             "--policy", "retries", "tries=3 delay=30 keep=600",
                             "--policy", "dies", "tries=2 delay=0",
                             "--policy", "dies2", "tries=2 delay=0", "--policy", "big", "tries=2 delay=0",
                             "--failed-max-payload", "16")
    try:
        wait_port(port, server.proc)
        yield Web(server, port)
    finally:
        server.stop()


def get(web: Web, template: str, path: str) -> object:
    got = web.request("GET", path)
    assert got[0] == 200, got
    return check("GET", template, *got)


def bury(web: Web, function: str, data: bytes, unique: str = "") -> str:
    """A background job of FUNCTION (tries=2 delay=0) whose two tries raise: it goes to the registry."""
    headers = {"X_Gearman_Unique": unique} if unique else {}
    handle = submit_bg(web, function, data, **headers)
    with web.wire() as worker:
        worker.send(T.CAN_DO, function.encode())
        for n in (1, 2):
            got, *_ = grab(worker)
            assert got.decode() == handle
            worker.send(T.WORK_EXCEPTION, got, b"RuntimeError: try %d\nTraceback (most recent call last)" % n)
    return handle


def failed_ids(web: Web, query: str = "") -> list[int]:
    listing = get(web, "/api/failed", "/api/failed" + query)
    return [entry["id"] for entry in listing["failed"]]  # type: ignore[index]


def test_a_kept_outcome_answers_by_handle_and_by_unique(web: Web) -> None:
    with web.wire() as worker:
        worker.send(T.CAN_DO, b"keeps")
        done = submit_bg(web, "keeps", b"1", X_Gearman_Unique="order-1")
        worker.send(T.WORK_COMPLETE, grab(worker)[0], b"the r\xc3\xa9sult")
        binary = submit_bg(web, "keeps", b"2")
        worker.send(T.WORK_COMPLETE, grab(worker)[0], b"\xff\x00")
        raised = submit_bg(web, "keeps", b"3")
        worker.send(T.WORK_EXCEPTION, grab(worker)[0], b"KeyError: 'k'")
        running = submit_bg(web, "keeps", b"4")
        handle = grab(worker)[0]
        worker.send(T.WORK_STATUS, handle, b"3", b"8")
        assert wait_for(lambda: get(web, "/api/jobs/{handle}", f"/api/jobs/{running}")["numerator"] == 3)
        view = get(web, "/api/jobs/{handle}", f"/api/jobs/{running}")
        assert (view["state"], view["denominator"], view["tries"], view["error"]) == ("running", 8, 1, None)
        worker.send(T.WORK_COMPLETE, handle, b"")
    assert wait_for(lambda: web.request("GET", f"/api/jobs/{done}")[0] == 200)
    view = get(web, "/api/jobs/{handle}", f"/api/jobs/{done}")
    assert (view["state"], view["result_text"], view["tries"], view["error"]) == ("complete", "the résult", 1, None)
    assert base64.b64decode(view["result"]) == b"the r\xc3\xa9sult" and view["size"] == 11
    assert view["expires_at"] == pytest.approx(view["ended_at"] + 600)
    assert get(web, "/api/jobs/{handle}", "/api/jobs/order-1") == view  # by unique
    view = get(web, "/api/jobs/{handle}", f"/api/jobs/{quote(binary, safe='')}")
    assert base64.b64decode(view["result"]) == b"\xff\x00" and view["result_text"] is None
    assert wait_for(lambda: web.request("GET", f"/api/jobs/{raised}")[0] == 200)
    view = get(web, "/api/jobs/{handle}", f"/api/jobs/{raised}")
    assert (view["state"], view["error"], view["result"]) == ("exception", "KeyError: 'k'", None)
    got = web.request("GET", "/api/jobs/no-such-unique")
    assert got[0] == 404 and "keep=" in check("GET", "/api/jobs/{handle}", *got)["error"]


def test_a_job_waiting_for_its_next_try_says_when_and_why(web: Web) -> None:
    handle = submit_bg(web, "retries", b"x")
    with web.wire() as worker:
        worker.send(T.CAN_DO, b"retries")
        worker.send(T.WORK_EXCEPTION, grab(worker)[0], b"ConnectionError: db down")
        failed_at = time.time()
    assert wait_for(lambda: get(web, "/api/jobs/{handle}", f"/api/jobs/{handle}")["tries"] == 2)
    view = get(web, "/api/jobs/{handle}", f"/api/jobs/{handle}")
    assert (view["state"], view["error"], view["when"]) == ("delayed", "exception: ConnectionError: db down", None)
    assert view["next_try"] == pytest.approx(failed_at + 30, abs=5)
    listed = get(web, "/api/jobs", "/api/jobs?function=retries")["jobs"]
    assert [j["next_try"] for j in listed] == [view["next_try"]]
    assert web.request("DELETE", f"/api/jobs/{handle}")[0] == 200  # a waiting job can be cancelled


def test_policies_are_read_set_and_dropped(web: Web) -> None:
    listing = get(web, "/api/policies", "/api/policies")
    assert listing["default"] is None
    assert {p["function"]: p["own"]["words"] for p in listing["functions"]}["retries"] == "tries=3 delay=30 keep=600"
    view = get(web, "/api/functions/{name}/policy", "/api/functions/pol/policy")
    assert view == {"function": "pol", "function_url": "pol", "own": None, "effective": None}
    got = web.request("PUT", "/api/functions/pol/policy", b"tries=4 delay=2 backoff=exponential")
    view = check("PUT", "/api/functions/{name}/policy", *got)
    assert got[0] == 200 and view["own"]["words"] == "tries=4 delay=2 backoff=exponential"
    assert view["effective"]["settings"]["tries"] == 4 and view["effective"]["settings"]["foreground"] is False
    with web.wire() as admin:  # the admin command sees the same policy
        assert admin.admin_line("policy pol") == b"OK tries=4 delay=2 backoff=exponential\n"
    fields = json.dumps({"tries": 2, "foreground": True, "keep": 5}).encode()
    got = web.request("PUT", "/api/functions/pol/policy", fields, {"Content-Type": "application/json"})
    assert check("PUT", "/api/functions/{name}/policy", *got)["own"]["words"] == "tries=2 foreground=yes keep=5"
    for body, headers, named in ((b"tries=3 dealy=1", {}, "'dealy=1'"), (b"tries=many", {}, "tries"),
                                 (b'{"tries": [1]}', {"Content-Type": "application/json"}, "tries"),
                                 (b'{"colour": "red"}', {"Content-Type": "application/json"}, "colour")):
        got = web.request("PUT", "/api/functions/pol/policy", body, headers)
        assert got[0] == 400 and named in check("PUT", "/api/functions/{name}/policy", *got)["error"], got
    got = web.request("PUT", "/api/functions/pol/policy", b"x" * 5000)
    assert got[0] == 413 and check("PUT", "/api/functions/{name}/policy", *got)
    got = web.request("DELETE", "/api/functions/pol/policy")
    assert check("DELETE", "/api/functions/{name}/policy", *got)["own"] is None
    with web.wire() as admin:
        assert admin.admin_line("policy pol") == b"OK none\n"
    got = web.request("DELETE", "/api/functions/never-seen/policy")
    assert got[0] == 404 and check("DELETE", "/api/functions/{name}/policy", *got)


def test_the_failed_registry_is_listed_paged_shown_requeued_and_discarded(web: Web) -> None:
    first = bury(web, "dies", b"payload-1", unique="dead-1")
    bury(web, "dies", b"payload-2")
    bury(web, "dies2", b"payload-3")
    ids = failed_ids(web, "?function=dies")
    assert len(ids) == 2
    page = get(web, "/api/failed", "/api/failed?function=dies&limit=1")
    assert [e["id"] for e in page["failed"]] == ids[:1] and page["more"] is True and page["total"] >= 3
    page = get(web, "/api/failed", f"/api/failed?function=dies&limit=1&after={ids[0]}")
    assert [e["id"] for e in page["failed"]] == ids[1:] and page["more"] is False
    entry = get(web, "/api/failed/{id}", f"/api/failed/{ids[0]}")
    assert (entry["handle"], entry["unique"], entry["data_text"], entry["tries"], entry["cut"]) == \
        (first, "dead-1", "payload-1", 2, False)
    assert base64.b64decode(entry["data"]) == b"payload-1"
    assert entry["error"] == "exception: RuntimeError: try 2\nTraceback (most recent call last)"
    assert [(t["try"], t["how"], t["text"].split("\n")[0]) for t in entry["history"]] == [
        (1, "exception", "RuntimeError: try 1"), (2, "exception", "RuntimeError: try 2")]
    assert all(t["worker"].startswith("127.0.0.1 fd ") for t in entry["history"])
    # one requeued: it leaves the registry and runs again, as a new background job
    got = web.request("POST", f"/api/failed/{ids[0]}/requeue")
    assert check("POST", "/api/failed/{id}/requeue", *got) == {"requeued": 1, "refused": 0}
    assert failed_ids(web, "?function=dies") == ids[1:]
    with web.wire() as worker:
        worker.send(T.CAN_DO, b"dies")
        handle, _, data = grab(worker)
        assert data == b"payload-1" and handle.decode() != first
        worker.send(T.WORK_COMPLETE, handle, b"fine now")
    got = web.request("POST", f"/api/failed/{ids[0]}/requeue")
    assert got[0] == 404 and check("POST", "/api/failed/{id}/requeue", *got)
    # a function's, by name
    got = web.request("POST", "/api/failed/requeue?function=dies2")
    assert check("POST", "/api/failed/requeue", *got) == {"requeued": 1, "refused": 0}
    assert failed_ids(web, "?function=dies2") == []
    got = web.request("POST", "/api/failed/requeue")
    assert got[0] == 400 and check("POST", "/api/failed/requeue", *got)
    # discarded: one, then all
    got = web.request("DELETE", f"/api/failed/{ids[1]}")
    assert check("DELETE", "/api/failed/{id}", *got) == {"discarded": 1}
    got = web.request("DELETE", f"/api/failed/{ids[1]}")
    assert got[0] == 404 and check("DELETE", "/api/failed/{id}", *got)
    bury(web, "dies", b"payload-4")
    got = web.request("DELETE", "/api/failed")
    assert got[0] == 400 and check("DELETE", "/api/failed", *got)
    got = web.request("DELETE", "/api/failed?all=true")
    assert check("DELETE", "/api/failed", *got)["discarded"] >= 1 and failed_ids(web) == []
    with web.wire() as admin:
        assert admin.admin_line("failed") == b".\n"  # the admin command sees the same registry
    counts = get(web, "/api/server", "/api/server")
    assert counts["failed_registry"]["size"] == 0 and counts["failed_registry"]["added"] >= 4
    assert counts["counters"]["buried"] >= 4 and counts["kept_results"]["count"] >= 1
    assert get(web, "/api/functions/{name}", "/api/functions/dies")["counters"]["buried"] >= 3


def test_a_job_whose_payload_was_cut_is_not_requeued(web: Web) -> None:
    bury(web, "big", b"0123456789" * 3)
    (entry,) = get(web, "/api/failed", "/api/failed?function=big")["failed"]
    assert (entry["size"], entry["cut"]) == (30, True)
    shown = get(web, "/api/failed/{id}", f"/api/failed/{entry['id']}")
    assert base64.b64decode(shown["data"]) == b"0123456789012345" and shown["data_text"] is None
    got = web.request("POST", f"/api/failed/{entry['id']}/requeue")
    assert got[0] == 409 and "part of its payload" in check("POST", "/api/failed/{id}/requeue", *got)["error"]
    got = web.request("POST", "/api/failed/requeue?function=big")
    assert check("POST", "/api/failed/requeue", *got) == {"requeued": 0, "refused": 1}
    assert failed_ids(web, "?function=big") == [entry["id"]]
    assert web.request("DELETE", "/api/failed?function=big")[0] == 200


def test_recent_ends_newest_first_with_their_worker(web: Web) -> None:
    with web.wire() as worker:
        worker.send(T.SET_CLIENT_ID, b"recent-worker")
        worker.send(T.CAN_DO, b"lately")
        ok = submit_bg(web, "lately", b"1")
        worker.send(T.WORK_COMPLETE, grab(worker)[0], b"")
        bad = submit_bg(web, "lately", b"2")
        worker.send(T.WORK_EXCEPTION, grab(worker)[0], b"ValueError: no\nmore lines")
        assert wait_for(lambda: len(get(web, "/api/recent", "/api/recent?function=lately")["jobs"]) == 2)
        workers = get(web, "/api/workers", "/api/workers")["workers"]
        (me,) = [w for w in workers if w["client_id"] == "recent-worker"]
        assert me["ran"] == {"completed": 1, "failed": 1, "taken_back": 0}
    jobs = get(web, "/api/recent", "/api/recent?function=lately")["jobs"]
    assert [(j["handle"], j["outcome"], j["error"]) for j in jobs] == [(bad, "exception", "ValueError: no"),
                                                                       (ok, "complete", None)]
    assert jobs[0]["worker"]["client_id"] == "recent-worker" and jobs[0]["ran"] >= 0
    failed = get(web, "/api/recent", "/api/recent?function=lately&outcome=failed")["jobs"]
    assert [j["handle"] for j in failed] == [bad]
    got = web.request("GET", "/api/recent?outcome=lost")
    assert got[0] == 400 and check("GET", "/api/recent", *got)


WRITES = [("PUT", "/api/functions/guarded/policy", "/api/functions/{name}/policy", b"tries=2"),
          ("DELETE", "/api/functions/guarded/policy", "/api/functions/{name}/policy", None),
          ("POST", "/api/failed/1/requeue", "/api/failed/{id}/requeue", b""),
          ("POST", "/api/failed/requeue?all=true", "/api/failed/requeue", b""),
          ("DELETE", "/api/failed/1", "/api/failed/{id}", None),
          ("DELETE", "/api/failed?all=true", "/api/failed", None)]


@pytest.mark.parametrize(("method", "path", "template", "body"), WRITES)
def test_changes_are_refused_to_a_foreign_origin_or_host(web: Web, method: str, path: str, template: str,
                                                         body: bytes | None) -> None:
    for headers in ({"Origin": "http://evil.example"}, {"Host": "evil.example"}):
        got = web.request(method, path, body, headers)
        assert got[0] == 403 and check(method, template, *got)


def test_changes_answer_to_the_admin_permission(tmp_path: Path) -> None:
    acl = tmp_path / "acl.toml"
    acl.write_text(ACL_TEXT)
    port = free_port()
    server = start_geartrain(tmp_path, "--http-port", str(port), "--acl", str(acl),
                             "--policy", "guarded", "tries=2 delay=0")
    try:
        wait_port(port, server.proc)
        web = Web(server, port)
        bury(web, "guarded", b"g")
        (entry,) = json.loads(web.request("GET", "/api/failed")[2])["failed"]
        for method, path, _, body in WRITES:
            path = path.replace("/1", f"/{entry['id']}")
            status, raw = _request(port, method, path, source="127.0.0.2", body=body)  # not an admin address
            assert status == 403 and "permission denied" in json.loads(raw)["error"], (path, raw)
            assert _request(port, "GET", path.partition("?")[0].removesuffix("/requeue"), source="127.0.0.2")[0] \
                in (200, 404)  # reading is not an admin command
        assert failed_ids(web) == [entry["id"]]  # nothing changed
        status, raw = _request(port, "POST", f"/api/failed/{entry['id']}/requeue", body=b"")  # an admin address
        assert status == 200 and json.loads(raw) == {"requeued": 1, "refused": 0}
        assert "may not run admin command 'failed'" in server.log.read_text()
    finally:
        server.stop()
