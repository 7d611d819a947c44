"""HTTP listener benchmark: two source trees of geartrain side by side, measured with `wrk`.

Each side is a real `geartrain serve --queue memory --http-port P` started from its own source tree
(the current one, and e.g. `git archive BASE | tar -x -C /tmp/gt-before` for the code before a
change), with one real echo worker (bench/pyworker.py, from this tree for both sides). For each case
wrk runs against it for a few seconds; sides alternate, the order flipping every round, and the
table gives medians over the rounds with the ratio current/before.

Cases: foreground `POST /echo` (64-byte body, the worker echoes it), background `POST /queued`
(each with its own unique; the jobs stay queued), `GET /api/server` and `GET /api/functions`.
Server CPU per 1,000 requests comes from /proc/PID/stat.

    .venv/bin/python bench/http_bench.py --before /tmp/gt-before --rounds 5

Needs `wrk` (Debian's package of that name).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procs import ROOT, cpu_seconds, free_port, python, wait_port  # noqa: E402

POST_LUA = 'wrk.method = "POST"\nwrk.body = string.rep("x", 64)\n' \
           'wrk.headers["Content-Type"] = "application/octet-stream"\n'
#: background submits, each with its own unique (the default unique "-" would coalesce identical bodies)
BACKGROUND_LUA = """
local n = 0
local body = string.rep("x", 64)
request = function()
  n = n + 1
  return wrk.format("POST", "/queued", {["X-Gearman-Background"] = "true", ["X-Gearman-Unique"] = tostring(n)}, body)
end
"""
#: case name -> (path, wrk script or None)
CASES = {
    "POST /echo (foreground, 1 worker)": ("/echo", POST_LUA),
    "POST /queued (background)": ("/queued", BACKGROUND_LUA),
    "GET /api/server": ("/api/server", None),
    "GET /api/functions": ("/api/functions", None),
}
_UNITS = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6}


class Side:
    """One source tree's server and its worker."""

    def __init__(self, name: str, tree: Path, workdir: Path) -> None:
        self.name = name
        self.tree = tree
        self.workdir = workdir
        self.server: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.http_port = 0

    def start(self) -> None:
        port, self.http_port = free_port(), free_port()
        code = f"import sys; sys.path.insert(0, {str(self.tree)!r}); from geartrain.cli import main; sys.exit(main())"
        log = open(self.workdir / f"{self.name}.log", "ab")  # noqa: SIM115 - kept by the process
        self.server = subprocess.Popen(
            [python(), "-c", code, "serve", "-p", str(port), "--http-port", str(self.http_port), "--queue", "memory",
             "--verbose", "WARNING"], stdout=log, stderr=log, cwd=self.workdir)
        wait_port(self.http_port, self.server)
        self.worker = subprocess.Popen([python(), str(ROOT / "bench" / "pyworker.py"), "--port", str(port),
                                        "-f", "echo"], stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # until the worker has registered
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/api/functions", timeout=10) as resp:
                functions = json.loads(resp.read())["functions"]
            if any(f["workers"] for f in functions):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: the echo worker did not register")

    def stop(self) -> None:
        for proc in (self.worker, self.server):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def wrk(port: int, path: str, script: str | None, seconds: float, connections: int, workdir: Path) -> float:
    """Requests per second wrk measured (non-2xx answers make the run fail)."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    if script is not None:
        lua = workdir / "case.lua"
        lua.write_text(script)
        cmd += ["-s", str(lua)]
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                         timeout=seconds + 30).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    m = re.search(r"Requests/sec:\s+([\d.]+)([kKM]?)", out)
    if m is None:
        raise RuntimeError(f"no rate in wrk's output:\n{out}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def measure(side: Side, args: argparse.Namespace, workdir: Path) -> dict[str, tuple[float, float]]:
    """Each case once against a fresh server: (requests/s, server CPU seconds per 1,000 requests)."""
    side.start()
    try:
        assert side.server is not None
        out = {}
        for case, (path, script) in CASES.items():
            wrk(side.http_port, path, script, 1, args.connections, workdir)  # warm-up
            before = cpu_seconds(side.server.pid, with_children=False)
            rate = wrk(side.http_port, path, script, args.seconds, args.connections, workdir)
            used = cpu_seconds(side.server.pid, with_children=False) - before
            out[case] = (rate, used / (rate * args.seconds) * 1000.0)
        return out
    finally:
        side.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", type=Path, required=True, help="source tree of the code to compare against")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=5.0, help="length of each timed wrk run")
    p.add_argument("-c", "--connections", type=int, default=16, help="wrk connections (requests in flight)")
    p.add_argument("--json", type=Path, help="also write every figure here")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        print("bench/http_bench.py needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    results: dict[str, dict[str, list[tuple[float, float]]]] = {"before": {}, "current": {}}
    with tempfile.TemporaryDirectory(prefix="gt-http-bench-") as tmp:
        workdir = Path(tmp)
        sides = [Side("before", args.before.resolve(), workdir), Side("current", ROOT, workdir)]
        for rnd in range(args.rounds):
            for side in sides if rnd % 2 == 0 else sides[::-1]:
                for case, figures in measure(side, args, workdir).items():
                    results[side.name].setdefault(case, []).append(figures)
                    print(f"round {rnd + 1} {side.name:7} {case:36} {figures[0]:9.0f} req/s "
                          f"{figures[1]:.3f} CPU s/1k", flush=True)
    print()
    print("| case | before (median req/s) | current (median req/s) | ratio "
          "| server CPU s/1k requests (before / current) |")
    print("|---|---|---|---|---|")
    for case in CASES:
        b = results["before"][case]
        c = results["current"][case]
        rb, rc = statistics.median(x[0] for x in b), statistics.median(x[0] for x in c)
        cb, cc = statistics.median(x[1] for x in b), statistics.median(x[1] for x in c)
        print(f"| {case} | {rb:,.0f} | {rc:,.0f} | {rc / rb:.2f} | {cb:.3f} / {cc:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
