"""Prometheus metrics: the collector reads the state's counters and histograms (driven here without
sockets, with a fake clock), and a running server's /metrics counts a real job."""

from __future__ import annotations

import http.client

import pytest
from prometheus_client.parser import text_string_to_metric_families

from geartrain.protocol.packets import T
from geartrain.server.metrics import scrape
from geartrain.server.view import ServerView
from tests.conftest import free_port, start_geartrain, wait_port
from tests.interop.wire import Wire
from tests.server.helpers import Harness


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(got: dict, name: str, **labels: str) -> float:
    return got[(name, tuple(sorted(labels.items())))]


def fake_server(h: Harness) -> ServerView:
    return ServerView(h.state, lambda: None, 1_000_000.0, "memory", lambda: [], lambda: (123, 456))


def test_counters_gauges_and_histograms_follow_the_state() -> None:
    h = Harness(job_retries=0)
    client = h.peer()
    worker = h.worker(b"f")
    h.state.now = 1000.0
    first = h.submit(client, b"f", b"1")
    h.submit(client, b"f", b"2")
    h.submit(client, b"f", b"3", ptype=T.SUBMIT_JOB_HIGH)
    h.submit(client, b"f", b"4", ptype=T.SUBMIT_JOB_LOW_BG)
    h.state.now = 1000.2  # the high-priority job waited 0.2 s
    high = h.grab(worker)[1][0]
    assert high != first
    h.state.now = 1001.2  # and ran 1.0 s
    h.send(worker, T.WORK_COMPLETE, high, b"ok")
    h.state.now = 1004.0  # the next waited 4 s
    j2 = h.grab(worker)[1][0]
    h.state.now = 1004.003  # ran 3 ms
    h.send(worker, T.WORK_FAIL, j2)
    j3 = h.grab(worker)[1][0]
    h.send(worker, T.WORK_EXCEPTION, j3, b"boom")
    got = samples(scrape(fake_server(h)))

    assert value(got, "geartrain_function_jobs_submitted_total", function="f") == 4
    assert value(got, "geartrain_function_jobs_completed_total", function="f") == 1
    assert value(got, "geartrain_function_jobs_failed_total", function="f") == 1
    assert value(got, "geartrain_function_jobs_exceptions_total", function="f") == 1
    # one low-priority job left, queued
    assert value(got, "geartrain_function_jobs", function="f") == 1
    assert value(got, "geartrain_function_jobs_waiting", function="f") == 1
    assert value(got, "geartrain_function_jobs_running", function="f") == 0
    assert value(got, "geartrain_function_workers", function="f") == 1
    assert value(got, "geartrain_function_jobs_queued", function="f", priority="low") == 1
    assert value(got, "geartrain_function_jobs_queued", function="f", priority="normal") == 0
    # queue wait: 0.2 s, 4 s, 4.003 s
    wait = "geartrain_function_queue_wait_seconds"
    assert value(got, wait + "_bucket", function="f", le="0.1") == 0
    assert value(got, wait + "_bucket", function="f", le="0.25") == 1
    assert value(got, wait + "_bucket", function="f", le="2.5") == 1
    assert value(got, wait + "_bucket", function="f", le="5.0") == 3
    assert value(got, wait + "_bucket", function="f", le="+Inf") == 3
    assert value(got, wait + "_count", function="f") == 3
    assert value(got, wait + "_sum", function="f") == pytest.approx(8.203)
    # run time: 1.0 s (complete; le is inclusive), 3 ms (fail), 0 s (exception)
    run = "geartrain_function_run_seconds"
    assert value(got, run + "_bucket", function="f", le="0.001") == 1
    assert value(got, run + "_bucket", function="f", le="0.005") == 2
    assert value(got, run + "_bucket", function="f", le="0.5") == 2
    assert value(got, run + "_bucket", function="f", le="1.0") == 3
    assert value(got, run + "_sum", function="f") == pytest.approx(1.003)
    assert value(got, "geartrain_received_bytes_total", listener="gearman") == 123
    assert value(got, "geartrain_sent_bytes_total", listener="gearman") == 456
    assert value(got, "geartrain_connections") == 2
    assert value(got, "geartrain_workers") == 1


def test_retries_timeouts_and_binary_names() -> None:
    h = Harness(job_retries=3)
    client = h.peer()
    w1 = h.worker(b"\xffbin")
    h.submit(client, b"\xffbin", b"x", ptype=T.SUBMIT_JOB_BG)
    h.grab(w1)
    h.state.disconnect(w1)  # the job comes back
    got = samples(scrape(fake_server(h)))
    assert value(got, "geartrain_function_jobs_retried_total", function="\\xffbin") == 1
    assert value(got, "geartrain_function_jobs_queued", function="\\xffbin", priority="normal") == 1
    assert value(got, "geartrain_function_workers", function="\\xffbin") == 0
    # it waited once but never ended a run: a wait histogram, no run-time series yet
    assert value(got, "geartrain_function_queue_wait_seconds_count", function="\\xffbin") == 1
    assert ("geartrain_function_run_seconds_count", (("function", "\\xffbin"),)) not in got


def test_a_running_server_counts_a_real_job(tmp_path) -> None:
    port = free_port()
    server = start_geartrain(tmp_path, "--http-port", str(port))
    try:
        wait_port(port, server.proc)
        with Wire(server.host, server.port) as worker, Wire(server.host, server.port) as client:
            worker.send(T.CAN_DO, b"m")
            handle = client.submit(T.SUBMIT_JOB, b"m", b"", b"data")
            worker.send(T.GRAB_JOB)
            assert worker.expect(T.JOB_ASSIGN)[0] == handle
            worker.send(T.WORK_COMPLETE, handle, b"done")
            assert client.expect(T.WORK_COMPLETE) == (handle, b"done")
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            assert resp.status == 200 and resp.getheader("content-type").startswith("text/plain")
            got = samples(resp.read())
            conn.close()
        assert value(got, "geartrain_function_jobs_submitted_total", function="m") == 1
        assert value(got, "geartrain_function_jobs_completed_total", function="m") == 1
        assert value(got, "geartrain_function_run_seconds_count", function="m") == 1
        assert value(got, "geartrain_function_queue_wait_seconds_count", function="m") == 1
        assert value(got, "geartrain_connections") == 2
        assert value(got, "geartrain_received_bytes_total", listener="gearman") > 0
        assert value(got, "geartrain_sent_bytes_total", listener="gearman") > 0
        assert value(got, "geartrain_received_bytes_total", listener="http") > 0
        assert value(got, "geartrain_info", version=value_label(got, "geartrain_info", "version"),
                     queue="memory") == 1
        assert any(name == "process_resident_memory_bytes" for name, _ in got)
    finally:
        server.stop()


def value_label(got: dict, name: str, label: str) -> str:
    for key_name, labels in got:
        if key_name == name:
            return dict(labels)[label]
    raise KeyError(name)


def test_retries_dead_letters_and_kept_results() -> None:
    from geartrain.server.policy import parse

    h = Harness()
    life = h.state.life
    life.set_policy(h.state.function(b"r"), parse("tries=2 delay=0 keep=10"))
    life.kept.max_count = 2
    client, worker = h.peer(), h.worker(b"r")
    for data in (b"a", b"b", b"c"):
        h.submit(client, b"r", data, ptype=T.SUBMIT_JOB_BG)
        for _ in range(2):  # two tries: the first waits for its retry, the second is buried
            h.send(worker, T.WORK_EXCEPTION, h.grab(worker)[1][0], b"boom-" + data)
            h.tick(0)
    got = samples(scrape(fake_server(h)))
    assert value(got, "geartrain_function_jobs_retried_total", function="r") == 3
    assert value(got, "geartrain_function_jobs_buried_total", function="r") == 3
    assert value(got, "geartrain_function_jobs_exceptions_total", function="r") == 3
    assert value(got, "geartrain_failed_jobs") == 3 and value(got, "geartrain_failed_jobs_dropped_total") == 0
    assert value(got, "geartrain_kept_results") == 2 and value(got, "geartrain_kept_results_bytes") == 12
    assert value(got, "geartrain_kept_results_evicted_total") == 1
    life.failed_jobs.max_count = 1
    h.submit(client, b"r", b"d", ptype=T.SUBMIT_JOB_BG)
    h.send(worker, T.WORK_COMPLETE, h.grab(worker)[1][0], b"ok")
    h.tick(11)  # the kept outcomes expire
    h.state.discard_failed(b"all")
    life.failed_jobs.add(b"H:x:1", b"r", b"", b"", 1, True, 0.0, b"")
    life.failed_jobs.add(b"H:x:2", b"r", b"", b"", 1, True, 0.0, b"")
    got = samples(scrape(fake_server(h)))
    assert value(got, "geartrain_kept_results") == 0 and value(got, "geartrain_kept_results_expired_total") == 2
    assert value(got, "geartrain_failed_jobs") == 1 and value(got, "geartrain_failed_jobs_dropped_total") == 1
