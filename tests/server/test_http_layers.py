"""The HTTP side is given a ServerView, never the Server: none of its modules imports anything above it
(app.py, connection.py), not even for type checking or inside a function (issue #14)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parents[2] / "geartrain" / "server"
#: each module of the HTTP side, and the modules of geartrain.server it may import
ALLOWED = {
    "budget.py": set(),
    "health.py": {"store"},
    "view.py": {"budget", "health", "jobs", "state"},
    "api.py": {"commands", "jobs", "state", "view"},
    "api_kept.py": {"api", "jobs", "lifecycle", "policy", "state", "store"},
    "metrics.py": {"jobs", "view"},
    "httpjob.py": {"jobs", "view"},
    "http.py": {"api", "api_kept", "metrics", "httpjob", "state", "view"},
}


def server_imports(path: Path) -> set[str]:
    """The geartrain.server modules PATH imports, wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .x import y / from . import x, y
                found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
            elif node.module and node.module.startswith("geartrain.server."):
                found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("geartrain.server.")}
    return found


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_the_http_side_imports_only_what_lies_below_it(module: str) -> None:
    imported = server_imports(SERVER / module)
    assert imported <= ALLOWED[module], f"{module} imports {sorted(imported - ALLOWED[module])}"
    tree = ast.parse((SERVER / module).read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
              and n.value.isidentifier()}  # string annotations
    assert "Server" not in names, f"{module} names app.Server"
