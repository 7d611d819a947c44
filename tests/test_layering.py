"""The package's layering: no import cycle among geartrain's modules, and the parts of the server take the narrow
things they need, never the Server (app.py).

Every import counts: at module level, under TYPE_CHECKING and inside functions (a lazy import is still an arrow).
A module importing its own package (that package's __init__, as ``from .. import __version__`` does) is not
counted: Python runs a package's __init__ before any module in it, whoever imports what.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "geartrain"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported(module: str) -> set[str]:
    """The geartrain modules MODULE imports."""
    path = MODULES[module]
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
            elif (node.module or "").split(".")[0] == "geartrain":
                base = []
            else:
                continue
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                name = f"{target}.{alias.name}"
                found.add(name if name in MODULES else target)
    return {m for m in found if m in MODULES and m != module and not module.startswith(m + ".")}


GRAPH = {m: imported(m) for m in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_geartrain():
    assert len(GRAPH) > 50 and GRAPH["geartrain.server.app"]  # the graph is real
    assert cycles(GRAPH) == []


def test_the_servers_parts_do_not_take_the_server():
    # they are given a Port, a ServerView, the State, a flush callback: never app.Server
    for module in ("connection", "pump", "http", "api", "metrics", "view", "httpjob", "commands", "state",
                   "lifecycle", "workers", "submitting", "results", "timers", "outbox", "jobs"):
        name = f"geartrain.server.{module}"
        assert "geartrain.server.app" not in GRAPH[name], name


def test_the_job_logic_is_below_the_event_loop():
    # the State and its parts are pure: no asyncio, no socket, no clock (the caller sets state.now)
    for module in ("state", "lifecycle", "workers", "submitting", "results", "timers", "outbox", "jobs", "replies"):
        tree = ast.parse(MODULES[f"geartrain.server.{module}"].read_text())
        names = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        names |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not names & {"asyncio", "socket", "time", "uvloop"}, (module, names)
