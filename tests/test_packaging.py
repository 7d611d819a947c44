"""geartrain as users install it, from the sdist and wheel `python -m build` makes (once per test session, from a
copy of the checkout), each into a fresh virtualenv outside the checkout:

* `pip install geartrain` with no extras has the client, the worker and the command line and none of the server's
  extras (database drivers, HTTP stack), and its Client and Worker run a real job through a real server;
* `pip install 'geartrain[server]'` runs `geartrain serve` with nothing from the repository: a real job through it,
  its dashboard and OpenAPI document over HTTP (package data in the wheel), and `geartrain --version` is the
  version the package holds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from geartrain import __version__
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


ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _copy_source(dest: Path) -> Path:
    """The checkout's source without its virtualenv, build output and caches (the build writes in the tree)."""
    ignore = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                    ".ruff_cache", "results")
    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


@dataclass
class Built:
    sdist: Path
    wheel: Path
    log: str  # what the build printed


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The sdist and the wheel of the checkout, built once per session as `python -m build` builds them (the wheel
    from the sdist, so the sdist must carry everything)."""
    tmp = tmp_path_factory.mktemp("build")
    src = _copy_source(tmp / "src")
    dist = tmp / "dist"
    done = subprocess.run([sys.executable, "-m", "build", "--outdir", str(dist), str(src)], capture_output=True,
                          text=True, timeout=600, env=ENV, cwd=tmp)
    assert done.returncode == 0, done.stdout + done.stderr
    (sdist,) = dist.glob("geartrain-*.tar.gz")
    (wheel,) = dist.glob("geartrain-*.whl")
    return Built(sdist, wheel, done.stdout + done.stderr)


def _venv(where: Path, *install: str) -> Path:
    """A fresh virtualenv at WHERE with INSTALL (pip arguments) installed; its bin directory."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=120, env=ENV)
    subprocess.run([str(where / "bin" / "python"), "-m", "pip", "install", "-q", *install], check=True, timeout=600,
                   env=ENV, cwd=where.parent)
    return where / "bin"


def _run_job(python: Path, address: str, cwd: Path) -> dict:
    """A reverse job through the server at ADDRESS, with the Worker and the Client of the install of PYTHON."""
    worker = subprocess.Popen([str(python), "-c", WORKER, address], cwd=cwd, env=ENV)
    try:
        out = subprocess.run([str(python), "-c", CLIENT, address], capture_output=True, text=True, timeout=60,
                             cwd=cwd, env=ENV)
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout)
        assert got["result"] == "niartraeg" and got["run"] == ["cba", "zyx"]
        return got
    finally:
        worker.terminate()
        worker.wait(10)


@pytest.mark.slow
def test_the_sdist_and_the_wheel_carry_everything(built: Built):
    assert "project.license" not in built.log  # no deprecation warning about its form
    assert built.wheel.name == f"geartrain-{__version__}-py3-none-any.whl"  # the version of geartrain/__init__.py
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
    dashboard = {p.name for p in (ROOT / "geartrain" / "server" / "dashboard").iterdir() if p.is_file()}
    assert {"index.html", "app.js", "style.css", "openapi.json"} <= dashboard
    assert {f"geartrain/server/dashboard/{name}" for name in dashboard} <= names
    with tarfile.open(built.sdist) as sdist:
        files = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "contrib/systemd/geartrain.service",
            "docs/migrating.md", "geartrain/server/dashboard/openapi.json"} <= files


@pytest.mark.slow
def test_plain_install_has_no_extras_and_its_client_and_worker_run_a_job(built: Built, tmp_path: Path):
    bin_dir = _venv(tmp_path / "venv", str(built.wheel))
    python = bin_dir / "python"
    found = json.loads(subprocess.run([str(python), "-c", CHECK_DRIVERS, *EXTRAS_ONLY], capture_output=True,
                                      text=True, check=True, cwd=tmp_path, env=ENV).stdout)
    assert not any(found.values()), found

    server = start_geartrain(tmp_path)  # from the checkout's virtualenv, which has everything
    try:
        got = _run_job(python, server.address, tmp_path)
        assert got["file"].startswith(str(tmp_path / "venv"))  # the installed package, not the checkout
    finally:
        server.stop()

    # the server without its extra: it runs (on asyncio's loop, saying which extra brings uvloop) ...
    port, log = free_port(), tmp_path / "plain-serve.log"
    plain = subprocess.Popen([str(bin_dir / "geartrain"), "serve", "-p", str(port), "--queue", "memory",
                              "--log-file", str(log)], cwd=tmp_path, env=ENV)
    try:
        wait_own_port(port, plain)
        assert "asyncio (uvloop is not installed: pip install 'geartrain[server]')" in log.read_text()
    finally:
        plain.terminate()
        plain.wait(10)
    # ... and an option that needs the extra says which
    serve = subprocess.run([str(bin_dir / "geartrain"), "serve", "--queue", "memory", "--http-port", "8080",
                            "--check-args"], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=ENV)
    assert serve.returncode == 1 and "pip install 'geartrain[server]'" in serve.stderr, serve.stderr


@pytest.mark.slow
def test_the_server_extra_runs_geartrain_serve_with_nothing_from_the_checkout(built: Built, tmp_path: Path):
    bin_dir = _venv(tmp_path / "venv", f"{built.wheel}[server]")
    geartrain = str(bin_dir / "geartrain")
    version = subprocess.run([geartrain, "--version"], capture_output=True, text=True, check=True, timeout=60,
                             cwd=tmp_path, env=ENV)
    assert version.stdout.strip() == f"geartrain {__version__}"

    port, http_port, log = free_port(), free_port(), tmp_path / "serve.log"
    queue = f"sqlite:///{tmp_path}/queue.sqlite"
    serve = subprocess.Popen([geartrain, "serve", "-p", str(port), "--http-port", str(http_port), "--queue", queue,
                              "--log-file", str(log), "--verbose", "NOTICE"], cwd=tmp_path, env=ENV)
    try:
        wait_own_port(port, serve)
        text = log.read_text()
        assert f"geartrain {__version__} listening on 127.0.0.1:{port}" in text and "; uvloop;" in text, text
        got = _run_job(bin_dir / "python", f"127.0.0.1:{port}", tmp_path)
        assert got["file"].startswith(str(tmp_path / "venv"))
        wait_own_port(http_port, serve)
        base = f"http://127.0.0.1:{http_port}"
        with urllib.request.urlopen(base + "/", timeout=10) as page:
            assert b"<html" in page.read().lower()
        with urllib.request.urlopen(base + "/openapi.json", timeout=10) as doc:
            assert json.load(doc)["openapi"].startswith("3.")
        with urllib.request.urlopen(base + "/readyz", timeout=10) as ready:
            assert json.load(ready)["ready"] is True
    finally:
        serve.terminate()
        serve.wait(10)
    assert serve.returncode == 0


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
