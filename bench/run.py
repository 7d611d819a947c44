"""geartrain's benchmark: every scenario against geartrain and the C gearmand (-t 1) in one run, alternating.

    python bench/run.py                     all scenarios, 3 rounds, medians and ratios in a table
    python bench/run.py --quick             tiny counts, 1 round (what tests/bench runs)
    python bench/run.py --scenario 1,2      some scenarios (numbers, or case ids such as 5b, 9-redis)
    python bench/run.py --profile -s 1,2    run geartrain's server under py-spy; top functions to bench/results/
    python bench/run.py --record            also write the results into docs/benchmarks.md and .svg

The same C load generator (bench/loadgen.c on libgearman, built here into bench/build/) drives both
servers. Each round runs each case's sides in turn, in alternating order, so slow drift of a shared
machine hits both alike. Exit status: 0 if every run of every side worked or was n/a (missing library
or store), 1 if any run failed (the medians then come from the runs that worked).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402
import scenarios  # noqa: E402
import servers  # noqa: E402
from procs import RESULTS, ROOT, BenchError, NotAvailable, build_loadgen, raise_nofile  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
SVG = ROOT / "docs" / "benchmarks.svg"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def machine() -> dict:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gm = "gearmand not installed"
    if servers.gearmand_available():
        out = subprocess.run([servers.GEARMAND, "--version"], capture_output=True, text=True).stdout.strip()
        gm = out.splitlines()[0].split(" - ")[0] if out else "gearmand"
    return {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu,
            "nproc": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(), "gearmand": gm,
            "loadavg": os.getloadavg()[0]}


def select(all_cases: list[scenarios.Case], spec: str | None) -> list[scenarios.Case]:
    if not spec:
        return all_cases
    wanted = [w.strip() for w in spec.split(",") if w.strip()]
    chosen = [c for c in all_cases if c.id in wanted or str(c.scenario) in wanted]
    unknown = [w for w in wanted if not any(c.id == w or str(c.scenario) == w for c in all_cases)]
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(unknown)} (have: {', '.join(c.id for c in all_cases)})")
    return chosen


def run_side(ctx: scenarios.Ctx, side: scenarios.Side, record: dict, verbose: bool) -> None:
    if record["status"] == "na":
        return
    t0 = time.monotonic()
    try:
        m = side.run(ctx)
    except NotAvailable as exc:
        record.update(status="na", reason=str(exc))
        print(f"  {ctx.case:9} {side.label:18} n/a: {exc}", flush=True)
        return
    except BenchError as exc:
        record["errors"].append(str(exc))
        record.update(status="ok" if record["runs"] else "error", reason=record["errors"][0])
        print(f"  {ctx.case:9} {side.label:18} ERROR: {exc}", flush=True)
        return
    except Exception as exc:  # noqa: BLE001 - a harness bug: report it, keep the other cases going
        record["errors"].append(f"{type(exc).__name__}: {exc}")
        record.update(status="ok" if record["runs"] else "error", reason=record["errors"][0])
        print(f"  {ctx.case:9} {side.label:18} ERROR:\n{traceback.format_exc()}", flush=True)
        return
    record["status"] = "ok"
    record["runs"].append(m)
    if verbose:
        extra = f" p50 {m['p50_us']:.0f}µs p99 {m['p99_us']:.0f}µs" if "p50_us" in m else ""
        cpu = m.get("cpu_per_1k")
        print(f"  {ctx.case:9} {side.label:18} {m.get('rate', 0):10,.0f} jobs/s{extra}"
              f"  server CPU {cpu if cpu is None else round(cpu, 3)} s/1k  ({time.monotonic() - t0:.1f}s)",
              flush=True)


def write_profiles(case_ids: list[str]) -> None:
    for cid in case_ids:
        raws = sorted(RESULTS.glob(f"profile-{cid}-r*.txt"))
        if not raws:
            continue
        text = report.profile_top(raws)
        out = RESULTS / f"profile-{cid}-top.txt"
        out.write_text(f"py-spy, geartrain server, case {cid}: top functions by self time\n\n{text}")
        (RESULTS / f"profile-{cid}-flame.svg").write_text(report.flamegraph(raws, f"geartrain server, case {cid}"))
        print(f"\nprofile of case {cid} ({out.relative_to(ROOT)}, profile-{cid}-flame.svg; raw collapsed stacks in "
              f"{', '.join(p.name for p in raws)}):")
        print("\n".join(text.splitlines()[:18]))


def record_docs(results: dict) -> None:
    table = report.markdown(results)
    SVG.write_text(report.svg(results))
    block = f"{BEGIN}\n{table}\n![ratio chart](benchmarks.svg)\n{END}"
    if DOC.exists() and BEGIN in DOC.read_text():
        text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, DOC.read_text(), flags=re.S)
    else:
        text = f"# Benchmarks\n\n## Results\n\n{block}\n"
    DOC.write_text(text)
    print(f"recorded in {DOC.relative_to(ROOT)} and {SVG.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny counts, 1 round: checks the harness, measures nothing")
    p.add_argument("-s", "--scenario", help="comma-separated scenario numbers or case ids (default: all)")
    p.add_argument("-r", "--rounds", type=int, help="rounds per case (default 3; 1 with --quick)")
    p.add_argument("--profile", action="store_true",
                   help="run geartrain's server under py-spy for the selected cases (slows it: figures are not "
                        "comparable); top listings and raw stacks go to bench/results/")
    p.add_argument("--native", action="store_true", help="with --profile: sample C frames too (py-spy --native)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--record", action="store_true", help="write the table into docs/benchmarks.md and the chart "
                   "into docs/benchmarks.svg")
    p.add_argument("--pygearman-python", default=os.environ.get("PYGEARMAN_PYTHON"), metavar="PATH",
                   help="python of a throwaway venv with pygearman, for the python-gearman reference rows "
                        "(default $PYGEARMAN_PYTHON; without it those rows are n/a)")
    p.add_argument("--from-json", metavar="PATH", help="run nothing: show (and with --record, record) the results "
                   "saved by an earlier --json")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-run lines")
    args = p.parse_args(argv)

    all_cases = scenarios.cases()
    if args.list:
        for c in all_cases:
            print(f"{c.id:10} {c.title}  [{' vs '.join(s.label for s in c.sides)}]")
        return 0
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
        report.summarize(results)
        report.print_table(results)
        if args.record:
            record_docs(results)
        return 0
    chosen = select(all_cases, args.scenario)
    rounds = args.rounds or (1 if args.quick else 3)
    limit = raise_nofile()
    build_loadgen()
    sizes = scenarios.Sizes.quick() if args.quick else scenarios.Sizes()
    if limit < sizes.idle + 200:
        sizes.idle = max(100, limit - 200)
        print(f"note: open-file limit {limit}: idle connections lowered to {sizes.idle}")
    if args.pygearman_python and not shutil.which(args.pygearman_python):
        print(f"note: {args.pygearman_python} not found: pygearman rows will be n/a")
        args.pygearman_python = None
    tmp = Path(tempfile.mkdtemp(prefix="geartrain-bench-"))
    ctx = scenarios.Ctx(sizes=sizes, tmp=tmp, pygearman=args.pygearman_python, native=args.native,
                        profile={c.id for c in chosen} if args.profile else set())
    if args.profile:
        RESULTS.mkdir(parents=True, exist_ok=True)
        for c in chosen:
            for old in RESULTS.glob(f"profile-{c.id}-*"):
                old.unlink()
    results: dict = {"machine": machine(), "rounds": rounds, "quick": args.quick,
                     "command": "python bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                     "cases": [{"id": c.id, "scenario": c.scenario, "title": c.title, "metric": c.metric,
                                "goal": c.goal, "cpu_of": c.cpu_of,
                                "sides": [{"label": s.label, "status": "pending", "reason": "", "runs": [],
                                           "errors": []} for s in c.sides]} for c in chosen]}
    started = time.monotonic()
    try:
        for r in range(rounds):
            print(f"round {r + 1}/{rounds}", flush=True)
            for case, rec in zip(chosen, results["cases"], strict=True):
                ctx.case, ctx.round = case.id, r
                order = list(zip(case.sides, rec["sides"], strict=True))
                if r % 2:
                    order.reverse()
                for side, srec in order:
                    run_side(ctx, side, srec, not args.quiet)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["seconds"] = time.monotonic() - started
    report.summarize(results)
    report.print_table(results)
    if args.profile:
        write_profiles([c.id for c in chosen])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    else:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "last.json").write_text(json.dumps(results, indent=1))
    if args.record:
        record_docs(results)
    errors = [(c["id"], s["label"]) for c in results["cases"] for s in c["sides"] if s.get("errors")]
    if errors:
        print(f"FAILED: {', '.join(f'{c}/{s}' for c, s in errors)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
