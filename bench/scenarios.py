"""The benchmark's scenarios (issue #5): each case is run for each of its sides, and measured the same way.

A Case has sides: the first is ours (geartrain's server, or its client/worker library), the second the
reference (the C gearmand, or libgearman's client/worker), any further ones are shown for comparison
(python-gearman). Each side is a function Ctx -> Measurement dict: "rate" (jobs/s), "jobs", "ok",
"cpu" (server CPU seconds over the measured phase, from /proc) and, for latency, "p50_us"/"p99_us".
A side that cannot run here raises NotAvailable(reason); anything else that goes wrong is an error.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import servers
from procs import BENCH, LOADGEN, RESULTS, Background, BenchError, NotAvailable, cpu_seconds, python, run_json


@dataclass
class Sizes:
    """Job counts per scenario (full run, or tiny for --quick)."""

    echo: int = 60_000
    warmup: int = 2_000
    bg: int = 100_000
    drain: int = 100_000
    latency: int = 5_000
    kib: int = 40_000
    mib: int = 24
    mib_inflight: int = 8
    mib_raw: int = 1_000
    idle: int = 10_000
    lib: int = 60_000
    durable: int = 3_000
    durable_bursts: int = 5  # scenario 9 times this many bursts of `durable` jobs per run: the median burst counts
    durable_drain: int = 5_000
    timeout: float = 600.0

    @classmethod
    def quick(cls) -> Sizes:
        return cls(echo=300, warmup=20, bg=500, drain=500, latency=100, kib=200, mib=2, mib_inflight=2, mib_raw=4,
                   idle=200,
                   lib=300, durable=200, durable_bursts=2, durable_drain=200, timeout=120.0)


@dataclass
class Ctx:
    """What every side function needs: sizes, a scratch dir, profiling, the pygearman interpreter."""

    sizes: Sizes
    tmp: Path
    profile: set[str] = field(default_factory=set)  # case ids whose geartrain server runs under py-spy
    pygearman: str | None = None
    native: bool = False  # py-spy --native: C frames (uvloop, libc) too
    case: str = ""
    round: int = 0

    def scratch(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.tmp))


@dataclass
class Side:
    label: str
    run: Callable[[Ctx], dict]


@dataclass
class Case:
    id: str
    scenario: int
    title: str
    sides: list[Side]
    metric: str = "rate"  # the figure the ratio compares: "rate" (higher is better) or "p50_us"/"p99_us"
    goal: str = ">= 1.0"  # what issue #5 asks of ratio = ours / reference
    cpu_of: str = "server"  # whose CPU the cpu column shows: "server", or "client"/"worker" (7 and 8)

    @property
    def lower_is_better(self) -> bool:
        return self.metric.endswith("_us")


# -- profiling ------------------------------------------------------------------------------------------------


class Profiler:
    """py-spy record on the geartrain server for one measured phase (raw collapsed stacks to bench/results/)."""

    def __init__(self, ctx: Ctx, server: servers.Server) -> None:
        self.proc: subprocess.Popen | None = None
        if server.kind != "geartrain" or ctx.case not in ctx.profile:
            return
        spy = shutil.which("py-spy") or str(Path(os.sys.executable).parent / "py-spy")
        if not os.access(spy, os.X_OK):
            raise BenchError("--profile needs py-spy (pip install -e '.[bench]')")
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.out = RESULTS / f"profile-{ctx.case}-r{ctx.round}.txt"
        # --native cannot sample without pausing the process; plain sampling does not pause it
        mode = ["--native"] if ctx.native else ["--nonblocking"]
        self.proc = subprocess.Popen([spy, "record", "--pid", str(server.pid), "--rate", "200", "--format", "raw",
                                      "-o", str(self.out), *mode],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)  # let it attach

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if not self.out.exists():
            raise BenchError(f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}")


# -- load processes -------------------------------------------------------------------------------------------


def client_cmd(ctx: Ctx, kind: str, port: int, *, jobs: int, inflight: int, size: int, func: str,
               background: bool = False, latency: bool = False, raw: bool = False) -> list[str]:
    if kind == "c":
        cmd = [str(LOADGEN), "client", "-p", str(port), "-f", func, "-n", str(jobs), "-k", str(inflight),
               "-s", str(size)]
        return cmd + (["-b"] if background else []) + (["-L"] if latency else []) + (["-R"] if raw else [])
    if kind == "geartrain":
        return [python(), str(BENCH / "pyclient.py"), "--port", str(port), "-f", func, "-n", str(jobs),
                "-k", str(inflight), "-s", str(size)]
    if kind == "pygearman":
        if not ctx.pygearman:
            raise NotAvailable("no pygearman interpreter (--pygearman-python PATH of a venv with pygearman)")
        return [ctx.pygearman, str(BENCH / "pygearman_driver.py"), "client", "--port", str(port), "-f", func,
                "-n", str(jobs), "-k", str(inflight), "-s", str(size)]
    raise ValueError(kind)


def start_workers(ctx: Ctx, kind: str, port: int, func: str, count: int, raw: bool = False,
                  cpus: set[int] | None = None) -> list[Background]:
    if kind == "c":
        return [Background([str(LOADGEN), "worker", "-p", str(port), "-f", func, "-t", str(count),
                            *(["-R"] if raw else [])], "C workers", cpus=cpus)]
    if kind in ("geartrain", "geartrain-sync"):
        sync = ["--sync"] if kind == "geartrain-sync" else []
        return [Background([python(), str(BENCH / "pyworker.py"), "--port", str(port), "-f", func, *sync],
                           "geartrain worker", cpus=cpus) for _ in range(count)]
    if kind == "pygearman":
        if not ctx.pygearman:
            raise NotAvailable("no pygearman interpreter (--pygearman-python PATH of a venv with pygearman)")
        return [Background([ctx.pygearman, str(BENCH / "pygearman_driver.py"), "worker", "--port", str(port),
                            "-f", func], "pygearman worker", cpus=cpus) for _ in range(count)]
    raise ValueError(kind)


def ensure_workers(server: servers.Server, procs: list[Background], func: str, count: int) -> None:
    if servers.wait_workers(server, func, count, timeout=15.0):
        return
    for p in procs:
        if p.proc.poll() is not None:
            out = p.stop()
            if '"na"' in out:
                import json

                raise NotAvailable(json.loads(out.strip().splitlines()[-1])["na"])
            err = p.proc.stderr.read()[-800:] if p.proc.stderr else ""
            raise BenchError(f"{p.what} exited {p.proc.returncode}: {err}")
    raise BenchError(f"{count} workers for {func!r} did not register with {server.kind} within 15s")


def with_cpu(result: dict, cpu: float) -> dict:
    result["cpu"] = cpu
    done = result.get("ok", result.get("jobs", 0))
    result["cpu_per_1k"] = cpu / done * 1000 if done else None
    return result


def check(result: dict, jobs: int, what: str) -> dict:
    if result.get("ok", result.get("jobs")) != jobs or result.get("failed", 0):
        raise BenchError(f"{what}: {result.get('ok', result.get('jobs'))} of {jobs} jobs done, "
                         f"{result.get('failed', 0)} failed: {result}")
    return result


# -- the generic runs -----------------------------------------------------------------------------------------


#: scenario 8's layout: (the server's and the client's CPUs, the measured worker's CPUs). Left to the
#: scheduler, one worker process, gearmand's threads and the client share 2 CPUs in ways that change from run
#: to run, and every worker's rate there is bimodal (about 20k or 45k jobs/s, gearmand's CPU per job doubling
#: in the slow mode); with the worker on a CPU of its own, repeated runs agree within a few percent.
WORKER_CPUS: tuple[set[int], set[int]] = ({0}, {1})


def foreground(ctx: Ctx, server_kind: str, *, size: int = 64, inflight: int = 100, jobs: int | None = None,
               workers: int = 4, worker: str = "c", client: str = "c", idle: int = 0, latency: bool = False,
               raw: bool = False, pin: bool = False) -> dict:
    """Foreground echo jobs from one client through SERVER_KIND to WORKERS echo workers (RAW: plain sockets).

    PIN (on a machine of 2 or more CPUs): the workers run on CPU 1, the server and the client on CPU 0,
    instead of wherever the scheduler puts them (see WORKER_CPUS)."""
    s = ctx.sizes
    jobs = jobs or s.echo
    tmp = ctx.scratch()
    rest_cpus, worker_cpus = WORKER_CPUS if pin and (os.cpu_count() or 1) >= 2 else (None, None)
    server = servers.start(server_kind, tmp, cpus=rest_cpus)
    bg: list[Background] = []
    try:
        if idle:
            idler = Background([str(LOADGEN), "idle", "-p", str(server.port), "-f", "idle", "-c", str(idle)],
                               "idle connections", stdin_pipe=True)
            bg.append(idler)
            ready = idler.read_line(timeout=300)
            if ready.get("ready") != idle:
                raise BenchError(f"idle connections: {ready}")
        procs = start_workers(ctx, worker, server.port, "echo", workers, raw=raw, cpus=worker_cpus)
        bg.extend(procs)
        ensure_workers(server, procs, "echo", workers if worker == "c" else len(procs))
        warm = min(s.warmup, max(jobs // 20, 1))
        if warm:
            run_json(client_cmd(ctx, client, server.port, jobs=warm, inflight=min(inflight, warm), size=size,
                                func="echo", raw=raw), s.timeout, f"{client} client warm-up", cpus=rest_cpus)
        cmd = client_cmd(ctx, client, server.port, jobs=jobs, inflight=inflight, size=size, func="echo",
                         latency=latency, raw=raw)
        wcpu0 = sum(cpu_seconds(p.proc.pid) for p in procs)
        cpu0 = server.cpu()
        prof = Profiler(ctx, server)
        result = run_json(cmd, s.timeout, f"{client} client", cpus=rest_cpus)
        prof.stop()
        result = with_cpu(check(result, jobs, f"{client} client via {server_kind}"), server.cpu() - cpu0)
        worker_cpu = sum(cpu_seconds(p.proc.pid) for p in procs) - wcpu0
        if not server.alive():
            raise BenchError(f"{server_kind} died during the run: {server.errlog.read_text()[-800:]}")
        result["worker_cpu_per_1k"] = worker_cpu / jobs * 1000
        if "client_cpu" in result:
            result["client_cpu_per_1k"] = result["client_cpu"] / jobs * 1000
        return result
    finally:
        for p in bg:
            p.stop()
        server.stop()


def background_submit(ctx: Ctx, server_kind: str, *, jobs: int, inflight: int = 1000, store: str | None = None,
                      bursts: int = 1) -> dict:
    """Background submits from one C client, nobody working (with STORE: durable queue).

    With BURSTS > 1 the same server takes that many runs of the client one after the other (each a new
    connection with uniques of its own, the jobs piling up in the queue): the measurement is the
    median burst's (its rate; "burst_rates" lists them all), the CPU column the server's over all of
    them. A burst of a few thousand jobs is over in a moment, so one burst alone moves with every hiccup
    of a shared machine."""
    tmp = ctx.scratch()
    backend = servers.backend(store, server_kind, tmp) if store else None
    if store and server_kind == "gearmand" and store not in servers.gearmand_queues():
        raise NotAvailable(f"gearmand here was built without the {store} queue")
    server = servers.start(server_kind, tmp, queue=backend.options(server_kind) if backend else None)
    try:
        cpu0 = server.cpu()
        prof = Profiler(ctx, server)
        results = [check(run_json(client_cmd(ctx, "c", server.port, jobs=jobs, inflight=inflight, size=64,
                                             func="bgq", background=True), ctx.sizes.timeout, "background client"),
                         jobs, f"background submits to {server_kind}") for _ in range(bursts)]
        prof.stop()
        cpu = server.cpu() - cpu0
        result = dict(sorted(results, key=lambda r: r["rate"])[len(results) // 2])
        if bursts > 1:
            result["burst_rates"] = [r["rate"] for r in results]
        result["cpu"] = cpu
        result["cpu_per_1k"] = cpu / (jobs * bursts) * 1000
        return result
    finally:
        server.stop()
        if backend:
            backend.cleanup()


def drain(ctx: Ctx, server_kind: str) -> dict:
    """Queue N background jobs (not timed), then time 4 C workers emptying the queue."""
    n = ctx.sizes.drain
    tmp = ctx.scratch()
    server = servers.start(server_kind, tmp)
    try:
        check(run_json(client_cmd(ctx, "c", server.port, jobs=n, inflight=1000, size=64, func="drainq",
                                  background=True), ctx.sizes.timeout, "queue fill"), n, "queue fill")
        cpu0 = server.cpu()
        prof = Profiler(ctx, server)
        workers = Background([str(LOADGEN), "worker", "-p", str(server.port), "-f", "drainq", "-t", "4",
                              "-n", str(n)], "C workers (drain)")
        result = workers.wait(ctx.sizes.timeout)
        prof.stop()
        if result.get("jobs", 0) < n:
            raise BenchError(f"drain: workers did {result.get('jobs')} of {n} jobs")
        result["ok"] = n
        return with_cpu(result, server.cpu() - cpu0)
    finally:
        server.stop()


def durable_drain(ctx: Ctx, server_kind: str, store: str, options: tuple[str, ...] = ()) -> dict:
    """Queue N durable background jobs (not timed), then time 4 C workers emptying the queue: every finished
    job is deleted from the store, and with OPTIONS such as --keep-results its outcome is written there too."""
    n = ctx.sizes.durable_drain
    tmp = ctx.scratch()
    backend = servers.backend(store, server_kind, tmp)
    if server_kind == "gearmand" and store not in servers.gearmand_queues():
        raise NotAvailable(f"gearmand here was built without the {store} queue")
    server = servers.start(server_kind, tmp, queue=[*backend.options(server_kind), *options])
    try:
        check(run_json(client_cmd(ctx, "c", server.port, jobs=n, inflight=1000, size=64, func="drainq",
                                  background=True), ctx.sizes.timeout, "queue fill"), n, "queue fill")
        cpu0 = server.cpu()
        prof = Profiler(ctx, server)
        workers = Background([str(LOADGEN), "worker", "-p", str(server.port), "-f", "drainq", "-t", "4",
                              "-n", str(n)], "C workers (durable drain)")
        result = workers.wait(ctx.sizes.timeout)
        prof.stop()
        if result.get("jobs", 0) < n:
            raise BenchError(f"durable drain: workers did {result.get('jobs')} of {n} jobs")
        result["ok"] = n
        return with_cpu(result, server.cpu() - cpu0)
    finally:
        server.stop()
        backend.cleanup()


# -- the cases ------------------------------------------------------------------------------------------------

DURABLE = ("memory", "sqlite", "postgres", "mysql", "redis")


def cases() -> list[Case]:
    s2 = [Side("geartrain", partial(foreground, server_kind="geartrain")),
          Side("gearmand", partial(foreground, server_kind="gearmand"))]

    def both(fn: Callable, **kw: object) -> list[Side]:
        return [Side("geartrain", lambda ctx: fn(ctx, "geartrain", **kw)),
                Side("gearmand", lambda ctx: fn(ctx, "gearmand", **kw))]

    out = [
        Case("1", 1, "foreground echo, 64 B, 100 in flight, 4 C workers", s2),
        Case("2", 2, "background submits, 1,000 in flight, no workers",
             both(lambda ctx, k: background_submit(ctx, k, jobs=ctx.sizes.bg))),
        Case("3", 3, "drain queued background jobs with 4 C workers", both(drain)),
        Case("4", 4, "latency, one job at a time (p50)",
             both(lambda ctx, k: foreground(ctx, k, inflight=1, workers=1, jobs=ctx.sizes.latency, latency=True)),
             metric="p50_us", goal="<= 1.0"),
        Case("5a", 5, "foreground echo, 1 KiB, 100 in flight",
             both(lambda ctx, k: foreground(ctx, k, size=1024, jobs=ctx.sizes.kib))),
        Case("5b", 5, "foreground echo, 1 MiB, 8 in flight",
             both(lambda ctx, k: foreground(ctx, k, size=1 << 20, jobs=ctx.sizes.mib,
                                            inflight=ctx.sizes.mib_inflight))),
        Case("5c", 5, "foreground echo, 1 MiB, 8 in flight, plain-socket client/workers",
             both(lambda ctx, k: foreground(ctx, k, size=1 << 20, jobs=ctx.sizes.mib_raw,
                                            inflight=ctx.sizes.mib_inflight, raw=True))),
        Case("6", 6, "scenario 1 beside 10,000 idle workers",
             both(lambda ctx, k: foreground(ctx, k, idle=ctx.sizes.idle))),
        Case("7", 7, "client library -> gearmand -> 4 C workers", [
            Side("AsyncClient", lambda ctx: foreground(ctx, "gearmand", client="geartrain", jobs=ctx.sizes.lib)),
            Side("libgearman client", lambda ctx: foreground(ctx, "gearmand", jobs=ctx.sizes.lib)),
            Side("pygearman client", lambda ctx: optional(foreground, ctx, "gearmand", client="pygearman",
                                                          jobs=ctx.sizes.lib)),
        ], cpu_of="client"),
        Case("8", 8, "one worker process, C client -> gearmand", [
            Side("AsyncWorker", lambda ctx: foreground(ctx, "gearmand", worker="geartrain", workers=1, pin=True,
                                                       jobs=ctx.sizes.lib)),
            Side("libgearman worker", lambda ctx: foreground(ctx, "gearmand", workers=1, jobs=ctx.sizes.lib, pin=True)),
            Side("Worker (blocking)", lambda ctx: foreground(ctx, "gearmand", worker="geartrain-sync", workers=1,
                                                             jobs=ctx.sizes.lib, pin=True)),
            Side("pygearman worker", lambda ctx: optional(foreground, ctx, "gearmand", worker="pygearman",
                                                          workers=1, jobs=ctx.sizes.lib, pin=True)),
        ], cpu_of="worker"),
    ]
    for store in DURABLE:
        # issue #4's targets: 10x gearmand on the same database (2x on Redis), and at least half of our
        # own in-memory rate; the memory row is the baseline for that half, not a target of its own
        goal = {"memory": "baseline", "redis": ">= 2.0"}.get(store, ">= 10.0")
        out.append(Case(f"9-{store}", 9, f"durable background submits, {store}",
                        both(lambda ctx, k, store=store: background_submit(ctx, k, jobs=ctx.sizes.durable,
                                                                           store=store,
                                                                           bursts=ctx.sizes.durable_bursts)),
                        goal=goal))
    # issue #15's cost: keeping every background job's outcome (written to the store with its delete) must
    # leave at least 0.8 of the drain rate with nothing configured; gearmand's drain on the same store beside
    out.append(Case("10-sqlite", 10, "durable background jobs drained by 4 C workers, outcomes kept, sqlite", [
        Side("geartrain, results kept", lambda ctx: durable_drain(ctx, "geartrain", "sqlite",
                                                                  ("--keep-results", "300"))),
        Side("geartrain", lambda ctx: durable_drain(ctx, "geartrain", "sqlite")),
        Side("gearmand", lambda ctx: durable_drain(ctx, "gearmand", "sqlite")),
    ], goal=">= 0.8"))
    # the same scenario 1 figure for latency's p99 is taken from case 4's runs (see run.py)
    return out


def optional(fn: Callable, *args: object, **kw: object) -> dict:
    """A comparison-only side (python-gearman): its failures are reported as n/a, not as harness errors."""
    try:
        return fn(*args, **kw)
    except BenchError as exc:
        raise NotAvailable(f"failed: {str(exc).splitlines()[0][:160]}") from None
