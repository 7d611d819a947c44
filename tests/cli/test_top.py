"""`geartrain top`: one frame (--once) against our server and the C gearmand, several servers, rates."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from geartrain.cli.top import Sample, ServerView, parse_status, rates, render
from geartrain.protocol.packets import T
from tests.conftest import ROOT, Server, free_port, start_geartrain
from tests.interop.wire import Wire, wait_for


def top(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "geartrain", "top", "--once", *args], capture_output=True,
                          text=True, timeout=30, cwd=ROOT, env={**os.environ, "COLUMNS": "140", **(env or {})})


def rows(output: str) -> dict[str, list[str]]:
    """Table rows by function name: the cells after it."""
    out = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃").split("│")]
        if len(cells) >= 6 and cells[-6].startswith("top_"):
            out[cells[-6]] = cells[-5:]
    return out


def test_once_shows_functions_jobs_and_workers(any_server: Server) -> None:
    with Wire(any_server.host, any_server.port) as client, Wire(any_server.host, any_server.port) as worker:
        for i in range(3):
            client.submit(T.SUBMIT_JOB_BG, b"top_queued", b"", b"%d" % i)
        worker.send(T.CAN_DO, b"top_worked")
        assert wait_for(lambda: b"top_worked\t0\t0\t1\n" in client.admin("status"), timeout=5)
        done = top("--servers", any_server.address)
    assert done.returncode == 0, done.stderr
    got = rows(done.stdout)
    assert got["top_queued"] == ["3", "0", "3", "0", "–"]
    assert got["top_worked"] == ["0", "0", "0", "1", "–"]
    assert any_server.address in done.stdout and "2 functions, 3 jobs, 0 running, 1 worker" in done.stdout


def test_several_servers_from_gearman_server_and_one_down(tmp_path: Path) -> None:
    a = start_geartrain(tmp_path)
    b = start_geartrain(tmp_path)
    dead = f"127.0.0.1:{free_port()}"
    try:
        with Wire(a.host, a.port) as ca, Wire(b.host, b.port) as cb:
            ca.submit(T.SUBMIT_JOB_BG, b"top_a", b"", b"x")
            cb.submit(T.SUBMIT_JOB_HIGH_BG, b"top_b", b"", b"y")
            cb.submit(T.SUBMIT_JOB_BG, b"top_b", b"", b"z")
            done = top(env={"GEARMAN_SERVER": f"{a.address},{b.address},{dead}"})
    finally:
        a.stop()
        b.stop()
    assert done.returncode == 1
    got = rows(done.stdout)
    assert got["top_a"][:4] == ["1", "0", "1", "0"] and got["top_b"][:4] == ["2", "0", "2", "0"]
    lines = done.stdout.splitlines()
    assert any(a.address in line and "top_a" in line for line in lines)
    assert any(b.address in line and "top_b" in line for line in lines)
    assert any(dead in line and "unreachable" in line for line in lines)


def test_rates_are_the_change_of_jobs_per_second() -> None:
    before = Sample(10.0, {"f": (10, 2, 1), "g": (0, 0, 0)})
    now = Sample(12.0, {"f": (4, 2, 1), "g": (5, 0, 0), "h": (1, 0, 0)})
    assert rates(before, now) == {"f": -3.0, "g": 2.5, "h": 0.5}
    assert rates(None, now) == {"f": None, "g": None, "h": None}
    assert rates(Sample(10.0, error="down"), now)["f"] is None
    console = Console(record=True, width=120)
    console.print(render([ServerView("h:1", "1.1.20", now, rates(before, now))], now="12:00:00"))
    text = console.export_text()
    assert "-3.00" in text and "+2.50" in text and "h:1  1.1.20  3 functions, 10 jobs, 2 running" in text
    # markup in a function name is shown as is
    console = Console(record=True, width=120)
    console.print(render([ServerView("h:1", "x", Sample(1.0, {"[bold]f": (1, 0, 0)}), {})]))
    assert "[bold]f" in console.export_text()


def test_status_lines_are_parsed_and_bad_ones_skipped() -> None:
    assert parse_status(["f\t3\t1\t2", "junk", "g\tx\t0\t0", "h\t0\t0\t0"]) == {"f": (3, 1, 2), "h": (0, 0, 0)}
