"""Prometheus metrics of a running server, read from its State when scraped.

The job logic only bumps plain integers (Function.submitted, .completed, ..., the queue-wait and
run-time histogram slots) and the connection layer counts bytes. A scrape copies those numbers
on the event loop (``Snapshot``, cheap), then builds the metric families and formats the text in
a thread (``render``), so neither serving jobs nor a large scrape holds up the loop for long.

Per function (label ``function``): the gauges gearman exporters publish from the admin ``status``
command (jobs, running, waiting, workers), jobs queued per priority, counters of submitted,
completed, failed, exception, retried, timed-out and buried jobs (tries spent, filed in the failed-job
registry), and histograms of queue wait and run time. Server-wide: connections, bytes in and out per
listener, jobs, dropped jobs, the failed-job registry (its size, the entries dropped to bound it), the kept
results of background jobs (count, bytes, evicted, expired), HTTP requests, start time and version, plus the
process collector (CPU, memory, file descriptors).
"""

from __future__ import annotations

from collections.abc import Iterator

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

from .. import __version__
from .jobs import TIME_BUCKETS
from .view import ServerView

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


class Snapshot:
    """The numbers of one scrape, copied from the state on the event loop (about a microsecond per
    function), so the slow part (building families, formatting text) can run in a thread."""

    __slots__ = ("functions", "connections", "accepted", "workers", "jobs", "dropped", "bytes", "responses",
                 "started", "queue", "failed", "kept")

    def __init__(self, view: ServerView) -> None:
        state = view.state
        self.functions = [
            (label(f.name), f.total, f.running, f.workers, tuple(f.queued), f.submitted, f.completed, f.failed,
             f.exceptions, f.retried, f.timeouts, list(f.wait_hist), f.wait_sum, list(f.run_hist), f.run_sum,
             f.buried)
            for f in sorted(state.functions.values(), key=lambda f: f.name)
        ]
        self.connections = len(state.peers)
        self.accepted = state.next_peer_id
        self.workers = sum(1 for p in state.peers.values() if p.as_worker.funcs)
        self.jobs = len(state.jobs)
        self.dropped = state.dropped
        self.bytes = view.traffic()
        self.responses = dict(view.http.responses) if view.http is not None else None
        self.started = view.started
        self.queue = view.queue
        registry, kept = state.life.failed_jobs, state.life.kept
        self.failed = (len(registry), registry.dropped)
        self.kept = (len(kept), kept.bytes, kept.evicted, kept.expired)


class SnapshotCollector(Collector):
    """Metric families of one Snapshot."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        snap = self.snap
        funcs = snap.functions

        def per_function(family: type, name: str, doc: str, index: int) -> Metric:
            m = family(name, doc, labels=["function"])
            for row in funcs:
                m.add_metric([row[0]], row[index])
            return m

        # what gearman exporters publish from `status`
        yield per_function(GaugeMetricFamily, "geartrain_function_jobs", "Jobs of the function in the server (queued, "
                           "delayed or running), as the admin status command's second column", 1)
        yield per_function(GaugeMetricFamily, "geartrain_function_jobs_running", "Jobs of the function a worker is "
                           "running", 2)
        waiting = GaugeMetricFamily("geartrain_function_jobs_waiting",
                                    "Jobs of the function not running yet (queued or delayed)", labels=["function"])
        for row in funcs:
            waiting.add_metric([row[0]], row[1] - row[2])
        yield waiting
        yield per_function(GaugeMetricFamily, "geartrain_function_workers", "Worker registrations (CAN_DO) for the "
                           "function", 3)
        queued = GaugeMetricFamily("geartrain_function_jobs_queued", "Runnable jobs of the function per priority",
                                   labels=["function", "priority"])
        for row in funcs:
            for prio, n in zip(("high", "normal", "low"), row[4], strict=True):
                queued.add_metric([row[0], prio], n)
        yield queued
        # what they cannot have
        yield per_function(CounterMetricFamily, "geartrain_function_jobs_submitted",
                           "Jobs submitted (new jobs, not joined duplicates)", 5)
        yield per_function(CounterMetricFamily, "geartrain_function_jobs_completed", "Jobs that ended with "
                           "WORK_COMPLETE", 6)
        yield per_function(CounterMetricFamily, "geartrain_function_jobs_failed", "Jobs that ended failed (WORK_FAIL, "
                           "cancelled, too many retries or timed out)", 7)
        yield per_function(CounterMetricFamily, "geartrain_function_jobs_exceptions", "Jobs that ended with "
                           "WORK_EXCEPTION", 8)
        yield per_function(CounterMetricFamily, "geartrain_function_jobs_retried", "Tries given back: jobs requeued "
                           "after their worker died or timed out, or waiting for their next try under a retry "
                           "policy", 9)
        yield per_function(CounterMetricFamily, "geartrain_function_jobs_timeouts", "Runs taken back after "
                           "CAN_DO_TIMEOUT", 10)
        yield per_function(CounterMetricFamily, "geartrain_function_jobs_buried", "Jobs whose tries under a retry "
                           "policy were spent, filed in the failed-job registry (dead letters)", 15)
        # a function's histograms appear with its first observation (idle functions cost no series)
        wait = HistogramMetricFamily("geartrain_function_queue_wait_seconds",
                                     "Time from a job becoming runnable to a worker taking it", labels=["function"])
        run = HistogramMetricFamily("geartrain_function_run_seconds",
                                    "Time from a worker taking a job to its result (complete, fail or exception)",
                                    labels=["function"])
        for row in funcs:
            if any(row[11]):
                wait.add_metric([row[0]], *_histogram(row[11], row[12]))
            if any(row[13]):
                run.add_metric([row[0]], *_histogram(row[13], row[14]))
        yield wait
        yield run

        # server-wide
        yield GaugeMetricFamily("geartrain_connections", "Open Gearman connections and HTTP submissions under way",
                                value=snap.connections)
        yield CounterMetricFamily("geartrain_connections_accepted",
                                  "Gearman connections accepted and HTTP submissions since start", value=snap.accepted)
        yield GaugeMetricFamily("geartrain_workers", "Connections with at least one registered function",
                                value=snap.workers)
        yield GaugeMetricFamily("geartrain_jobs", "Jobs in the server", value=snap.jobs)
        yield CounterMetricFamily("geartrain_jobs_dropped", "Foreground jobs dropped because every client left",
                                  value=snap.dropped)
        yield GaugeMetricFamily("geartrain_failed_jobs", "Jobs in the failed-job registry", value=snap.failed[0])
        yield CounterMetricFamily("geartrain_failed_jobs_dropped", "Failed jobs dropped from the registry, oldest "
                                  "first, to stay within --failed-max", value=snap.failed[1])
        yield GaugeMetricFamily("geartrain_kept_results", "Outcomes of background jobs kept after they ended",
                                value=snap.kept[0])
        yield GaugeMetricFamily("geartrain_kept_results_bytes", "Bytes of the kept outcomes' data", value=snap.kept[1])
        yield CounterMetricFamily("geartrain_kept_results_evicted", "Kept outcomes dropped early, oldest first, to "
                                  "stay within --keep-results-max and --keep-results-bytes", value=snap.kept[2])
        yield CounterMetricFamily("geartrain_kept_results_expired", "Kept outcomes dropped when their keep= time was "
                                  "up", value=snap.kept[3])
        received = CounterMetricFamily("geartrain_received_bytes", "Bytes received", labels=["listener"])
        sent = CounterMetricFamily("geartrain_sent_bytes", "Bytes sent", labels=["listener"])
        for listener, n_in, n_out in snap.bytes:
            received.add_metric([listener], n_in)
            sent.add_metric([listener], n_out)
        yield received
        yield sent
        if snap.responses is not None:
            requests = CounterMetricFamily("geartrain_http_requests", "HTTP requests answered, by status code",
                                           labels=["code"])
            for code in sorted(snap.responses):
                requests.add_metric([str(code)], snap.responses[code])
            yield requests
        yield GaugeMetricFamily("geartrain_start_time_seconds", "When the server started (Unix time)",
                                value=snap.started)
        info = InfoMetricFamily("geartrain", "The server's version and queue")
        info.add_metric([], {"version": __version__, "queue": snap.queue})
        yield info


class _Scrape:
    """What generate_latest reads: the snapshot's families, then the process collectors'."""

    def __init__(self, snap: Snapshot, base: CollectorRegistry) -> None:
        self.snap = snap
        self.base = base

    def collect(self) -> Iterator[Metric]:
        yield from SnapshotCollector(self.snap).collect()
        yield from self.base.collect()


def make_registry() -> CollectorRegistry:
    """The process-wide collectors (CPU, memory, file descriptors, GC, Python version)."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def render(snap: Snapshot, base: CollectorRegistry) -> bytes:
    """The text exposition of a snapshot and BASE's collectors; safe to run in a thread."""
    return generate_latest(_Scrape(snap, base))  # type: ignore[arg-type]


def scrape(view: ServerView, base: CollectorRegistry | None = None) -> bytes:
    """Snapshot and render in one call (tests, and callers already off the hot path)."""
    return render(Snapshot(view), base if base is not None else make_registry())


__all__ = ["CONTENT_TYPE", "Snapshot", "SnapshotCollector", "make_registry", "render", "scrape", "label"]
