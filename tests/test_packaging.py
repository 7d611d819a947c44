"""geartrain as users install it: `pip install geartrain` with no extras, in a fresh virtualenv outside the
checkout, has the client, the worker and the command line and none of the server's extras (database
drivers, HTTP stack), and its Client and Worker run a real job through a real server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, start_geartrain, wait_own_port

#: what only the extras bring (import names): none may come with a plain install
EXTRAS_ONLY = ["asyncpg", "asyncmy", "redis", "prometheus_client", "aiohttp", "uvloop"]

WORKER = """
import sys
from geartrain import Worker
worker = Worker(sys.argv[1], client_id="packaging")
worker.register("reverse", lambda job: job.data[::-1])
worker.work()
"""

CLIENT = """
import json, sys
import geartrain
from geartrain import AsyncClient, AsyncWorker, Client, Task, Worker
with Client(sys.argv[1]) as client:
    result = client.submit("reverse", b"geartrain", timeout=30)
    tasks = client.run([Task("reverse", b"abc"), Task("reverse", b"xyz")])
print(json.dumps({"result": result.decode(), "run": [t.result.decode() for t in tasks], "file": geartrain.__file__}))
"""

CHECK_DRIVERS = """
import importlib.util, json, sys
print(json.dumps({name: importlib.util.find_spec(name) is not None for name in sys.argv[1:]}))
"""


def _copy_source(dest: Path) -> Path:
    """The checkout's source without its virtualenv, build output and caches (pip builds in the tree)."""
    ignore = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache",
                                    ".ruff_cache", "results")
    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


@pytest.mark.slow
def test_plain_install_has_no_extras_and_its_client_and_worker_run_a_job(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    src = _copy_source(tmp_path / "src")
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), str(src)],
                           capture_output=True, text=True, check=True, timeout=300, env=env, cwd=tmp_path)
    assert "project.license" not in built.stdout + built.stderr  # no deprecation warning about its form
    (wheel,) = wheels.glob("geartrain-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120, env=env)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", str(wheel)], check=True, timeout=300, env=env,
                   cwd=tmp_path)

    found = json.loads(subprocess.run([python, "-c", CHECK_DRIVERS, *EXTRAS_ONLY], capture_output=True, text=True,
                                      check=True, cwd=tmp_path, env=env).stdout)
    assert not any(found.values()), found

    server = start_geartrain(tmp_path)  # from the checkout's virtualenv, which has everything
    worker = subprocess.Popen([python, "-c", WORKER, server.address], cwd=tmp_path, env=env)
    try:
        out = subprocess.run([python, "-c", CLIENT, server.address], capture_output=True, text=True, timeout=60,
                             cwd=tmp_path, env=env)
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout)
        assert got["result"] == "niartraeg" and got["run"] == ["cba", "zyx"]
        assert got["file"].startswith(str(venv))  # the installed package, not the checkout
    finally:
        worker.terminate()
        worker.wait(10)
        server.stop()

    # the server without its extra: it runs (on asyncio's loop, saying which extra brings uvloop) ...
    port, log = free_port(), tmp_path / "plain-serve.log"
    plain = subprocess.Popen([str(venv / "bin" / "geartrain"), "serve", "-p", str(port), "--queue", "memory",
                              "--log-file", str(log)], cwd=tmp_path, env=env)
    try:
        wait_own_port(port, plain)
        assert "asyncio (uvloop is not installed: pip install 'geartrain[server]')" in log.read_text()
    finally:
        plain.terminate()
        plain.wait(10)
    # ... and an option that needs the extra says which
    serve = subprocess.run([str(venv / "bin" / "geartrain"), "serve", "--queue", "memory", "--http-port", "8080",
                            "--check-args"], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert serve.returncode == 1 and "pip install 'geartrain[server]'" in serve.stderr, serve.stderr


def test_main_names_at_the_top_imported_on_first_use():
    code = """
import sys, geartrain
assert "geartrain.client" not in sys.modules and "geartrain.worker" not in sys.modules  # import geartrain is cheap
from geartrain import AsyncClient, AsyncWorker, Client, Task, Worker
import geartrain.client, geartrain.worker
assert (Client, AsyncClient, Task) == (geartrain.client.Client, geartrain.client.AsyncClient, geartrain.client.Task)
assert (Worker, AsyncWorker) == (geartrain.worker.Worker, geartrain.worker.AsyncWorker)
assert set(geartrain.__all__) >= {"Client", "AsyncClient", "Worker", "AsyncWorker", "Task"}
try:
    geartrain.Nope
except AttributeError:
    pass
else:
    raise AssertionError("geartrain.Nope")
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=ROOT)
