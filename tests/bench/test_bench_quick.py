"""The benchmark harness cannot silently rot: its quick mode runs every scenario once against both servers.

No timing is asserted (performance is measured by `make bench`, never by a test): these tests check that
the run completes, that every side either produced a well-formed measurement or an explicit n/a with its
reason, and that a broken side makes the harness fail rather than pass quietly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import GEARMAND, ROOT, need_binary, need_peer

BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import report  # noqa: E402
import run as bench_run  # noqa: E402
import scenarios  # noqa: E402
from procs import BenchError, NotAvailable  # noqa: E402

EXPECTED = ["1", "2", "3", "4", "5a", "5b", "5c", "6", "7", "8", "9-memory", "9-sqlite", "9-postgres", "9-mysql",
            "9-redis", "10-sqlite"]
# sides that need nothing beyond gearmand, libgearman and our own server: they must run, never be n/a
MUST_RUN = {"geartrain", "gearmand", "libgearman client", "libgearman worker", "AsyncClient", "AsyncWorker",
            "Worker (blocking)"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict:
    need_binary(GEARMAND)
    import shutil

    need_peer("gcc and libgearman-dev", shutil.which("gcc") is not None
              and Path("/usr/include/libgearman-1.0/gearman.h").exists())
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    proc = subprocess.run([sys.executable, str(BENCH / "run.py"), "--quick", "--quiet", "--json", str(out)],
                          capture_output=True, text=True, timeout=280, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    results["_stdout"] = proc.stdout
    return results


def test_quick_run_covers_every_scenario(quick: dict) -> None:
    assert [c["id"] for c in quick["cases"]] == EXPECTED
    assert quick["quick"] is True and quick["rounds"] == 1
    assert {"date", "cpu", "nproc", "gearmand"} <= set(quick["machine"])
    assert "ratio" in quick["_stdout"]


def test_every_side_measured_or_explained(quick: dict) -> None:
    sizes = scenarios.Sizes.quick()
    expected_jobs = {"1": sizes.echo, "2": sizes.bg, "3": sizes.drain, "4": sizes.latency, "5a": sizes.kib,
                     "5b": sizes.mib, "5c": sizes.mib_raw, "6": sizes.echo, "7": sizes.lib, "8": sizes.lib,
                     "10-sqlite": sizes.durable_drain}
    for case in quick["cases"]:
        for side in case["sides"]:
            where = f"case {case['id']} / {side['label']}"
            assert side["status"] in ("ok", "na"), f"{where}: {side['status']} {side['reason']}"
            if side["status"] == "na":
                assert side["reason"], f"{where}: n/a without a reason"
                assert side["label"] not in MUST_RUN or case["id"].startswith("9-"), f"{where}: {side['reason']}"
                continue
            (run,) = side["runs"]
            jobs = expected_jobs.get(case["id"], sizes.durable)
            assert run["rate"] > 0, where
            assert run.get("ok", run.get("jobs")) == jobs, f"{where}: {run}"
            assert run["cpu"] >= 0 and run["cpu_per_1k"] is not None, where
            if case["metric"] == "p50_us":
                assert 0 < run["p50_us"] <= run["p99_us"], f"{where}: {run}"
        ours, ref = case["sides"][0], case["sides"][1]
        if ours["status"] == ref["status"] == "ok":
            assert case["ratio"] is not None and case["ratio"] > 0, case["id"]


def test_gearmand_side_runs_for_server_scenarios(quick: dict) -> None:
    for case in quick["cases"]:
        if case["scenario"] <= 6:
            assert case["sides"][1]["label"] == "gearmand"
            assert case["sides"][1]["status"] == "ok", case["id"]


def test_report_outputs_are_well_formed(quick: dict) -> None:
    root = ET.fromstring(report.svg(quick))
    assert root.tag.endswith("svg")
    bars = [e for e in root.iter() if e.tag.endswith("rect")]
    assert len(bars) >= 2  # the background and at least one ratio bar
    table = report.markdown(quick).splitlines()
    rows = [line for line in table if line.startswith("| ") and not line.startswith("| #")]
    assert len(rows) == len(EXPECTED)


def _fake_cases(failing: bool) -> list[scenarios.Case]:
    def ok(ctx: scenarios.Ctx) -> dict:
        return {"rate": 10.0, "jobs": 5, "ok": 5, "cpu": 0.0, "cpu_per_1k": 0.0}

    def na(ctx: scenarios.Ctx) -> dict:
        raise NotAvailable("store not built yet")

    def broken(ctx: scenarios.Ctx) -> dict:
        raise BenchError("server died")

    return [scenarios.Case("1", 1, "fake", [scenarios.Side("geartrain", ok), scenarios.Side("gearmand", ok)]),
            scenarios.Case("2", 2, "fake n/a", [scenarios.Side("geartrain", na), scenarios.Side("gearmand", ok)]),
            scenarios.Case("3", 3, "fake broken",
                           [scenarios.Side("geartrain", broken if failing else ok), scenarios.Side("gearmand", ok)])]


@pytest.mark.parametrize("failing", [False, True])
def test_broken_side_fails_the_run_and_na_does_not(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                   failing: bool) -> None:
    monkeypatch.setattr(bench_run.scenarios, "cases", lambda: _fake_cases(failing))
    monkeypatch.setattr(bench_run, "build_loadgen", lambda: None)
    out = tmp_path / "r.json"
    status = bench_run.main(["--rounds", "2", "--quiet", "--json", str(out)])
    results = json.loads(out.read_text())
    assert status == (1 if failing else 0)
    by_id = {c["id"]: c for c in results["cases"]}
    assert by_id["1"]["ratio"] == 1.0 and len(by_id["1"]["sides"][0]["runs"]) == 2
    assert by_id["2"]["sides"][0]["status"] == "na" and by_id["2"]["sides"][0]["reason"] == "store not built yet"
    assert by_id["3"]["sides"][0]["status"] == ("error" if failing else "ok")
    assert len(by_id["3"]["sides"][0]["errors"]) == (2 if failing else 0)
