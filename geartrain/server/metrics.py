"""Prometheus metrics of a running server, read from its State when scraped.

The job logic only bumps plain integers (Function.submitted, .completed, ..., the queue-wait and
run-time histogram slots) and the connection layer counts bytes; this Collector turns them into
metric families on each scrape, so serving jobs never touches prometheus_client.

Per function (label ``function``): the gauges gearman exporters publish from the admin ``status``
command (jobs, running, waiting, workers), jobs queued per priority, counters of submitted,
completed, failed, exception, retried and timed-out jobs, and histograms of queue wait and run time.
Server-wide: connections, bytes in and out per listener, jobs, dropped jobs, HTTP requests, start
time and version, plus the process collector (CPU, memory, file descriptors).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from .jobs import TIME_BUCKETS, Function

if TYPE_CHECKING:
    from .app import Server

CONTENT_TYPE = CONTENT_TYPE_LATEST
_BOUNDS = [repr(float(b)) for b in TIME_BUCKETS] + ["+Inf"]


def label(name: bytes) -> str:
    """A function name as a label value (invalid UTF-8 as \\xNN, so distinct names stay distinct)."""
    return name.decode("utf-8", "backslashreplace")


def _histogram(counts: list[int], total: float) -> tuple[list[tuple[str, float]], float]:
    cumulative = []
    running = 0
    for bound, n in zip(_BOUNDS, counts, strict=True):
        running += n
        cumulative.append((bound, running))
    return cumulative, total


class ServerCollector(Collector):
    """Reads one Server's state on every scrape."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        server = self.server
        state = server.state
        funcs: list[Function] = sorted(state.functions.values(), key=lambda f: f.name)
        labels = [label(f.name) for f in funcs]

        def gauge(name: str, doc: str, value_of) -> GaugeMetricFamily:  # noqa: ANN001
            g = GaugeMetricFamily(name, doc, labels=["function"])
            for lab, f in zip(labels, funcs, strict=True):
                g.add_metric([lab], value_of(f))
            return g

        def counter(name: str, doc: str, value_of) -> CounterMetricFamily:  # noqa: ANN001
            c = CounterMetricFamily(name, doc, labels=["function"])
            for lab, f in zip(labels, funcs, strict=True):
                c.add_metric([lab], value_of(f))
            return c

        # what gearman exporters publish from `status`
        yield gauge("geartrain_function_jobs", "Jobs of the function in the server (queued, delayed or running), "
                    "as the admin status command's second column", lambda f: f.total)
        yield gauge("geartrain_function_jobs_running", "Jobs of the function a worker is running",
                    lambda f: f.running)
        yield gauge("geartrain_function_jobs_waiting", "Jobs of the function not running yet (queued or delayed)",
                    lambda f: f.total - f.running)
        yield gauge("geartrain_function_workers", "Worker registrations (CAN_DO) for the function",
                    lambda f: f.workers)
        queued = GaugeMetricFamily("geartrain_function_jobs_queued", "Runnable jobs of the function per priority",
                                   labels=["function", "priority"])
        for lab, f in zip(labels, funcs, strict=True):
            for i, prio in enumerate(("high", "normal", "low")):
                queued.add_metric([lab, prio], f.queued[i])
        yield queued
        # what they cannot have
        yield counter("geartrain_function_jobs_submitted", "Jobs submitted (new jobs, not joined duplicates)",
                      lambda f: f.submitted)
        yield counter("geartrain_function_jobs_completed", "Jobs that ended with WORK_COMPLETE",
                      lambda f: f.completed)
        yield counter("geartrain_function_jobs_failed", "Jobs that ended failed (WORK_FAIL, cancelled, "
                      "too many retries or timed out)", lambda f: f.failed)
        yield counter("geartrain_function_jobs_exceptions", "Jobs that ended with WORK_EXCEPTION",
                      lambda f: f.exceptions)
        yield counter("geartrain_function_jobs_retried", "Jobs requeued after their worker died or timed out",
                      lambda f: f.retried)
        yield counter("geartrain_function_jobs_timeouts", "Runs taken back after CAN_DO_TIMEOUT",
                      lambda f: f.timeouts)
        wait = HistogramMetricFamily("geartrain_function_queue_wait_seconds",
                                     "Time from a job becoming runnable to a worker taking it", labels=["function"])
        run = HistogramMetricFamily("geartrain_function_run_seconds",
                                    "Time from a worker taking a job to its result (complete, fail or exception)",
                                    labels=["function"])
        for lab, f in zip(labels, funcs, strict=True):
            buckets, total = _histogram(f.wait_hist, f.wait_sum)
            wait.add_metric([lab], buckets, total)
            buckets, total = _histogram(f.run_hist, f.run_sum)
            run.add_metric([lab], buckets, total)
        yield wait
        yield run

        # server-wide
        yield GaugeMetricFamily("geartrain_connections", "Open connections (Gearman protocol and HTTP submitters)",
                                value=len(state.peers))
        yield CounterMetricFamily("geartrain_connections_accepted", "Connections accepted since start",
                                  value=state.next_peer_id)
        yield GaugeMetricFamily("geartrain_workers", "Connections with at least one registered function",
                                value=sum(1 for p in state.peers.values() if p.funcs))
        yield GaugeMetricFamily("geartrain_jobs", "Jobs in the server", value=len(state.jobs))
        yield CounterMetricFamily("geartrain_jobs_dropped", "Foreground jobs dropped because every client left",
                                  value=state.dropped)
        received = CounterMetricFamily("geartrain_received_bytes", "Bytes received", labels=["listener"])
        sent = CounterMetricFamily("geartrain_sent_bytes", "Bytes sent", labels=["listener"])
        received.add_metric(["gearman"], server.bytes_in)
        sent.add_metric(["gearman"], server.bytes_out)
        http = server.http
        if http is not None:
            received.add_metric(["http"], http.bytes_in)
            sent.add_metric(["http"], http.bytes_out)
        yield received
        yield sent
        if http is not None:
            requests = CounterMetricFamily("geartrain_http_requests", "HTTP requests answered, by status code",
                                           labels=["code"])
            for code in sorted(http.responses):
                requests.add_metric([str(code)], http.responses[code])
            yield requests
        yield GaugeMetricFamily("geartrain_start_time_seconds", "When the server started (Unix time)",
                                value=server.started)
        from .. import __version__

        info = InfoMetricFamily("geartrain", "The server's version and queue")
        info.add_metric([], {"version": __version__, "queue": server.store.name})
        yield info


def make_registry(server: Server) -> CollectorRegistry:
    """A registry of its own per server (tests run several servers in one process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(server))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format of every metric in REGISTRY."""
    return generate_latest(registry)


__all__ = ["CONTENT_TYPE", "ServerCollector", "make_registry", "render", "label"]
