"""Summaries of a benchmark run: medians and ratios, the rich table, the markdown table and an SVG bar chart.

Input is run.py's results dict: {"cases": [{"id", "title", "metric", "goal", "cpu_of", "sides": [{"label",
"status", "reason", "runs": [measurement, ...]}]}], "machine": {...}}.
"""

from __future__ import annotations

import html
import statistics

FIELDS = ("rate", "p50_us", "p99_us", "cpu_per_1k", "client_cpu_per_1k", "worker_cpu_per_1k")


def summarize(results: dict) -> None:
    """Add each side's medians and each case's ratio (first side / second side) and verdict, in place."""
    by_id = {c["id"]: c for c in results["cases"]}
    for case in results["cases"]:
        for side in case["sides"]:
            runs = side.get("runs") or []
            side["median"] = {f: statistics.median(vals) for f in FIELDS
                              if (vals := [r[f] for r in runs if r.get(f) is not None])}
        ours, ref = case["sides"][0], case["sides"][1]
        metric = case["metric"]
        a, b = ours.get("median", {}).get(metric), ref.get("median", {}).get(metric)
        case["ratio"] = a / b if a is not None and b else None
        case["met"] = None
        if case["ratio"] is not None and case["goal"][:2] in ("<=", ">="):
            bound = float(case["goal"].split()[1])
            case["met"] = case["ratio"] <= bound if case["goal"].startswith("<=") else case["ratio"] >= bound
        if metric == "p50_us":
            pa, pb = ours.get("median", {}).get("p99_us"), ref.get("median", {}).get("p99_us")
            case["ratio_p99"] = pa / pb if pa is not None and pb else None
            if case["met"] is not None and case["ratio_p99"] is not None:
                case["met"] = case["met"] and case["ratio_p99"] <= 1.0
    one, six = by_id.get("1"), by_id.get("6")
    if one and six:
        for s1, s6 in zip(one["sides"], six["sides"], strict=False):
            r1, r6 = s1.get("median", {}).get("rate"), s6.get("median", {}).get("rate")
            s6["vs_scenario_1"] = r6 / r1 if r1 and r6 else None
        ours = six["sides"][0].get("vs_scenario_1")
        six["goal"] = ">= 1.0 and >= 0.9 x scenario 1"
        if six.get("met") is not None and ours is not None:
            six["met"] = six["met"] and ours >= 0.9
    memory = by_id.get("9-memory")
    if memory:  # issue #4: a durable queue should take at least half of our own in-memory rate
        base = memory["sides"][0].get("median", {}).get("rate")
        for case in results["cases"]:
            if case["id"].startswith("9-") and case is not memory:
                rate = case["sides"][0].get("median", {}).get("rate")
                share = case["sides"][0]["vs_memory"] = rate / base if rate and base else None
                if "9-memory" not in case["goal"]:
                    case["goal"] += " and >= 0.5 x 9-memory"
                if case["met"] is not None:
                    case["met"] = case["met"] and share is not None and share >= 0.5


def fmt_value(side: dict, metric: str) -> str:
    if side["status"] != "ok":
        return "n/a" if side["status"] == "na" else "ERROR"
    med = side["median"]
    if metric == "p50_us":
        return f"p50 {med.get('p50_us', 0):,.0f} µs / p99 {med.get('p99_us', 0):,.0f} µs"
    rate = med.get("rate", 0)
    return f"{rate:,.1f} jobs/s" if rate < 100 else f"{rate:,.0f} jobs/s"


def fmt_cpu(side: dict, cpu_of: str) -> str:
    if side["status"] != "ok":
        return "–"
    key = "cpu_per_1k" if cpu_of == "server" else f"{cpu_of}_cpu_per_1k"
    v = side["median"].get(key)
    return "–" if v is None else f"{v:.3f}"


def notes(case: dict) -> str:
    out = []
    for side in case["sides"]:
        if side["status"] == "na":
            out.append(f"{side['label']} n/a: {side['reason']}")
        elif side.get("errors"):
            n = len(side["errors"])
            out.append(f"{side['label']}: {n} of {n + len(side.get('runs') or [])} runs FAILED "
                       f"({side['errors'][0][:160]})")
    for side in case["sides"][2:]:
        if side["status"] == "ok":
            out.append(f"{side['label']}: {fmt_value(side, case['metric'])} (CPU {fmt_cpu(side, case['cpu_of'])})")
    if case.get("ratio_p99") is not None:
        out.append(f"p99 ratio {case['ratio_p99']:.2f}")
    for side in case["sides"][:2]:
        if side.get("vs_scenario_1") is not None:
            out.append(f"{side['label']} at {side['vs_scenario_1']:.0%} of scenario 1")
        if side.get("vs_memory") is not None:
            out.append(f"{side['label']} at {side['vs_memory']:.0%} of its 9-memory rate")
    if case["cpu_of"] != "server":
        out.append(f"server: gearmand; CPU column = the {case['cpu_of']} process")
    return "; ".join(out)


def rows(results: dict) -> list[list[str]]:
    table = []
    for case in results["cases"]:
        ours, ref = case["sides"][0], case["sides"][1]
        ratio = "–" if case["ratio"] is None else f"{case['ratio']:.2f}"
        met = {True: "yes", False: "NO", None: "–"}[case["met"]]
        table.append([case["id"], case["title"], f"{ours['label']}: {fmt_value(ours, case['metric'])}",
                      f"{ref['label']}: {fmt_value(ref, case['metric'])}", ratio, case["goal"], met,
                      f"{fmt_cpu(ours, case['cpu_of'])} / {fmt_cpu(ref, case['cpu_of'])}", notes(case)])
    return table


HEADERS = ["#", "scenario", "ours (median)", "reference (median)", "ratio", "goal", "met",
           "CPU s/1k jobs (ours / ref)", "notes"]


def print_table(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"geartrain vs gearmand — {results['rounds']} round(s), medians"
              + (" (quick mode: counts too small to mean anything)" if results.get("quick") else ""))
    for h in HEADERS:
        t.add_column(h, overflow="fold")
    for r in rows(results):
        t.add_row(*r)
    Console(width=200).print(t)


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [f"Run of {m['date']} on {m['cpu']} ({m['nproc']} cores), Linux {m['kernel']}, Python {m['python']}, "
             f"{m['gearmand']}; load average {m.get('loadavg', 0):.1f} at the start (the machine is shared); "
             f"{results['rounds']} rounds alternating the servers, medians shown. "
             f"Command: `{results['command']}`.", "",
             "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for r in rows(results):
        lines.append("| " + " | ".join(c.replace("|", "/") for c in r) + " |")
    return "\n".join(lines) + "\n"


def svg(results: dict) -> str:
    """Bars from the 1x line on a log scale: ours/reference per case (latency: reference/ours, so right = better)."""
    import math

    items = []
    for case in results["cases"]:
        r = case["ratio"]
        if r:
            r = 1 / r if case["goal"].startswith("<=") else r
        items.append((case["id"], case["title"], r or None))
    values = [v for _, _, v in items if v]
    lo = min([0.25] + values) / 1.3
    hi = max([4.0] + values) * 1.3
    width, left, right, row, top = 900, 330, 30, 26, 50
    plot = width - left - right
    height = top + row * len(items) + 58

    def x(v: float) -> float:
        return left + plot * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    bottom = top + row * len(items)
    date = html.escape(results["machine"]["date"])
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">'
           f'geartrain vs reference, ratio on a log scale (right of 1× = geartrain better) — {date}</text>']
    for tick in (0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000, 3000):
        if lo <= tick <= hi:
            out.append(f'<line x1="{x(tick):.1f}" y1="{top - 6}" x2="{x(tick):.1f}" y2="{bottom}" stroke="#ddd"/>')
            out.append(f'<text x="{x(tick):.1f}" y="{bottom + 16}" text-anchor="middle">{tick:g}×</text>')
    one = x(1.0)
    for i, (cid, title, v) in enumerate(items):
        y = top + i * row
        label = html.escape(f"{cid}. {title}"[:52])
        out.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{label}</text>')
        if v is None:
            out.append(f'<text x="{one + 6:.1f}" y="{y + 16}" fill="#888">n/a</text>')
            continue
        end = x(v)
        color = "#2a9d4b" if v >= 1.0 else "#d0453a"
        out.append(f'<rect x="{min(one, end):.1f}" y="{y + 4}" width="{max(abs(end - one), 1):.1f}" '
                   f'height="{row - 8}" fill="{color}"/>')
        if v >= 1.0:
            out.append(f'<text x="{end + 4:.1f}" y="{y + 16}">{v:.2f}</text>')
        else:
            out.append(f'<text x="{one + 4:.1f}" y="{y + 16}">{v:.2f}</text>')
    out.append(f'<line x1="{one:.1f}" y1="{top - 6}" x2="{one:.1f}" y2="{bottom}" stroke="black" '
               'stroke-dasharray="4 3"/>')
    out.append(f'<text x="12" y="{height - 12}" fill="#555">reference: C gearmand -t 1 (rows 1-6, 9); libgearman '
               'client / worker through gearmand (rows 7, 8). Medians of '
               f'{results["rounds"]} round(s).</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def profile_top(raw_files: list, limit: int = 25) -> str:
    """Top functions by self time (and total time) from py-spy raw (collapsed) stacks."""
    from collections import Counter

    self_t: Counter = Counter()
    total_t: Counter = Counter()
    py_t: Counter = Counter()  # self time charged to the innermost Python frame (C callees included)
    samples = 0
    for path in raw_files:
        for line in open(path, encoding="utf-8", errors="replace"):
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            samples += n
            frames = stack.split(";")
            # py-spy puts the thread/process name first when present; frames look like "func (file:line)"
            self_t[_frame(frames[-1])] += n
            py = [f for f in frames if ".py" in f]
            py_t[_frame(py[-1]) if py else "(no Python frame)"] += n
            for f in {_frame(fr) for fr in frames}:
                total_t[f] += n
    if not samples:
        return "no samples\n"
    out = [f"{samples} samples", "", "self%   total%  function"]
    for f, n in self_t.most_common(limit):
        out.append(f"{100 * n / samples:5.1f}  {100 * total_t[f] / samples:6.1f}  {f}")
    out += ["", "by innermost Python function (its C calls, e.g. write/memcpy under --native, included):"]
    for f, n in py_t.most_common(limit):
        out.append(f"{100 * n / samples:5.1f}  {f}")
    out += ["", "top by total (inclusive) time:"]
    for f, n in total_t.most_common(limit):
        out.append(f"{100 * n / samples:6.1f}  {f}")
    return "\n".join(out) + "\n"


def _frame(frame: str) -> str:
    # "handle (geartrain/server/state.py:120)" -> "handle (geartrain/server/state.py)" so lines aggregate
    name, _, where = frame.partition(" (")
    where = where.removesuffix(")")
    file = where.rsplit(":", 1)[0] if ":" in where else where
    return f"{name} ({file})" if file else name


def flamegraph(raw_files: list, title: str) -> str:
    """A flame graph (SVG, root at the bottom, hover for names) from py-spy raw collapsed stacks."""
    root: dict = {"n": 0, "kids": {}}
    for path in raw_files:
        for line in open(path, encoding="utf-8", errors="replace"):
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            node = root
            node["n"] += int(count)
            for frame in stack.split(";"):
                node = node["kids"].setdefault(_frame(frame), {"n": 0, "kids": {}})
                node["n"] += int(count)
    width, row = 1200, 17

    def depth(node: dict) -> int:
        return 1 + max((depth(k) for k in node["kids"].values()), default=0)

    levels = depth(root)
    height = levels * row + 40
    total = root["n"] or 1
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" '
           f'font-size="11"><rect width="{width}" height="{height}" fill="#fff"/>',
           f'<text x="6" y="16" font-family="sans-serif" font-size="13">{html.escape(title)} — {total} samples</text>']

    def draw(name: str, node: dict, x: float, level: int) -> None:
        w = width * node["n"] / total
        if w < 0.5:
            return
        y = height - (level + 1) * row
        hue = 20 + (hash(name) % 40)
        label = html.escape(name)
        out.append(f'<g><title>{label} ({100 * node["n"] / total:.1f}%)</title>'
                   f'<rect x="{x:.1f}" y="{y}" width="{max(w - 0.5, 0.5):.1f}" height="{row - 1}" '
                   f'fill="hsl({hue},85%,60%)"/>')
        if w > 40:
            out.append(f'<text x="{x + 3:.1f}" y="{y + 12}">{label[:int(w / 6.6)]}</text>')
        out.append("</g>")
        for kname, kid in sorted(node["kids"].items()):
            draw(kname, kid, x, level + 1)
            x += width * kid["n"] / total

    x = 0.0
    for name, kid in sorted(root["kids"].items()):
        draw(name, kid, x, 0)
        x += width * kid["n"] / total
    out.append("</svg>")
    return "\n".join(out) + "\n"
