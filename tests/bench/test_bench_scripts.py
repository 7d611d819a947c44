"""The benchmark scripts beside bench/run.py (store rates, memory, the libraries) cannot silently rot: each
runs once with tiny counts and must finish with its table. Nothing about speed is asserted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import GEARMAND, ROOT, need_binary, need_peer

BENCH = ROOT / "bench"


def bench(script: str, *args: str, timeout: float = 180) -> str:
    out = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_store_add():
    lines = bench("store_add.py", "--batches", "2", "--batch", "10", "sqlite").splitlines()
    assert lines[0].startswith("backend") and lines[1].split()[0] == "sqlite"


def test_store_submit():
    need_binary(GEARMAND)
    lines = bench("store_submit.py", "--jobs", "50", "--window", "10", "--runs", "1", "memory").splitlines()
    assert lines[0].startswith("queue") and lines[1].split()[0] == "memory"


def test_memory_check():
    out = bench("memory_check.py", "--jobs", "2000", "--runs", "2", "--path", "both")
    paths = json.loads(out.strip().splitlines()[-1])
    assert [p["path"] for p in paths] == ["memory", "sqlite"] and len(paths[0]["rounds"]) == 2


def test_libraries():
    need_peer("cc and libgearman-dev", shutil.which("cc") is not None
              and Path("/usr/include/libgearman-1.0/gearman.h").exists())
    out = bench("libraries.py", "--jobs", "300", "--repeat", "1", "--server", "geartrain")
    assert "(0 failed)" in out and "best: AsyncClient" in out, out


def test_state_cost():
    # the in-process run plays every job to its end (the script asserts it), with and without the fast paths
    for extra in ((), ("--no-fast-paths",)):
        out = bench("state_cost.py", "--jobs", "300", *extra)
        assert " jobs of 64 B: " in out, out
        assert out.startswith("no fast paths" if extra else "fast paths"), out
