"""Processes for the benchmark: the loadgen binary (build and run), free ports, CPU accounting, limits.

Everything here is server-neutral; servers.py starts the two job servers and scenarios.py composes runs.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BUILD = BENCH / "build"
RESULTS = BENCH / "results"
LOADGEN_SRC = BENCH / "loadgen.c"
LOADGEN = BUILD / "loadgen"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class NotAvailable(Exception):  # noqa: N818 - a verdict, not an error
    """This side of a case cannot run here yet (library, store or peer missing): reported as n/a, with why."""


class BenchError(Exception):
    """A run that should have worked did not: the harness or a server is broken (the run fails)."""


def build_loadgen(force: bool = False) -> Path:
    """Compile bench/loadgen.c with gcc -O2 against libgearman into bench/build/ (only when it changed)."""
    if not force and LOADGEN.exists() and LOADGEN.stat().st_mtime >= LOADGEN_SRC.stat().st_mtime:
        return LOADGEN
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise BenchError("gcc not found: the load generator is C (apt-get install gcc libgearman-dev)")
    BUILD.mkdir(parents=True, exist_ok=True)
    cmd = [gcc, "-O2", "-Wall", "-o", str(LOADGEN), str(LOADGEN_SRC), "-lgearman", "-lpthread"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError(f"building loadgen failed ({' '.join(cmd)}):\n{proc.stderr}")
    return LOADGEN


def raise_nofile() -> int:
    """Raise RLIMIT_NOFILE to its hard limit; children (servers, loadgen) inherit it. Returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft
    return hard


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"process {proc.args[0]} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def cpu_seconds(pid: int, with_children: bool = True) -> float:
    """User+system CPU seconds of PID (all its threads), plus its live descendants (from /proc/PID/stat)."""
    pids = [pid]
    if with_children:
        tree = _children()
        todo = [pid]
        while todo:
            kids = tree.get(todo.pop(), [])
            pids.extend(kids)
            todo.extend(kids)
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / CLK_TCK


def last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise BenchError(f"no JSON result in output: {text[-500:]!r}")


def on_cpus(cpus: set[int] | None):
    """A preexec_fn that keeps a child (and every thread it starts) on CPUS; None: leave it to the scheduler."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def run_json(cmd: list[str], timeout: float, what: str, env: dict | None = None,
             cpus: set[int] | None = None) -> dict:
    """Run a load process to completion and return its JSON result line (BenchError if it failed)."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                              env={**os.environ, **(env or {})}, preexec_fn=on_cpus(cpus))
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{what} did not finish within {timeout}s: {' '.join(map(str, cmd))}") from exc
    try:
        result = last_json(proc.stdout)
    except BenchError:
        raise BenchError(f"{what} exited {proc.returncode} without a result: {proc.stderr[-800:]}") from None
    if "na" in result:
        raise NotAvailable(result["na"])
    if proc.returncode != 0 or "error" in result:
        raise BenchError(f"{what} failed (exit {proc.returncode}): {result} {proc.stderr[-800:]}")
    return result


class Background:
    """A load process that runs beside the measured one (workers, idle connections); stop() ends it."""

    def __init__(self, cmd: list[str], what: str, stdin_pipe: bool = False, env: dict | None = None,
                 cpus: set[int] | None = None) -> None:
        self.what = what
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                     stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                                     env={**os.environ, **(env or {})}, preexec_fn=on_cpus(cpus))

    def read_line(self, timeout: float) -> dict:
        """Wait for the process's first JSON line on stdout (e.g. {"ready": N})."""
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sel.select(timeout=0.2):
                line = self.proc.stdout.readline()
                if not line:
                    break
                if line.strip().startswith("{"):
                    result = json.loads(line)
                    if "error" in result:
                        raise BenchError(f"{self.what}: {result} {self.proc.stderr.read()[-800:]}")
                    if "na" in result:
                        raise NotAvailable(result["na"])
                    return result
            elif self.proc.poll() is not None:
                break
        self.stop()
        raise BenchError(f"{self.what} gave no result within {timeout}s: {self.proc.stderr.read()[-800:]}")

    def wait(self, timeout: float) -> dict:
        """Wait for the process to end by itself and return its JSON result."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise BenchError(f"{self.what} did not finish within {timeout}s") from None
        if self.proc.returncode != 0:
            raise BenchError(f"{self.what} exited {self.proc.returncode}: {err[-800:]}")
        return last_json(out)

    def stop(self) -> str:
        """SIGTERM (and close stdin), then SIGKILL if needed; returns what it printed."""
        if self.proc.poll() is None:
            if self.proc.stdin:
                try:
                    self.proc.stdin.close()
                except OSError:
                    pass
            self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate(timeout=5)
        except ValueError:  # streams already consumed
            out = ""
        return out or ""


def python() -> str:
    return sys.executable
