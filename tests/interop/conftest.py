"""Shared interop fixtures: the peer programs (gearman, gearadmin, compiled C, Perl, PHP) and process helpers.

Every external program runs with a timeout and is killed when the test ends. The C programs in
``c/`` are compiled once per test session, in parallel, into a temporary directory.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import need_binary, need_peer

HERE = Path(__file__).resolve().parent
C_DIR = HERE / "c"
PERL_DIR = HERE / "perl"
PHP_DIR = HERE / "php"

#: Longest any single peer command may run.
CMD_TIMEOUT = 30.0


def run(cmd: Sequence[str], *, timeout: float = CMD_TIMEOUT, input: bytes | None = None,
        env: dict | None = None) -> subprocess.CompletedProcess:
    """Run CMD to completion (bounded by TIMEOUT); capture stdout and stderr as bytes."""
    return subprocess.run(list(cmd), input=input, capture_output=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, stdin=None if input is not None else subprocess.DEVNULL)


class Background:
    """A peer process running beside the test (usually a worker); always killed at the end."""

    def __init__(self, cmd: Sequence[str], env: dict | None = None, cwd: Path | None = None) -> None:
        self.cmd = list(cmd)
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}, cwd=cwd,
                                     start_new_session=True)

    def stop(self, timeout: float = 5.0) -> tuple[bytes, bytes]:
        """Kill the process (and its process group: gearman -w forks children); return its output."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 15)
            except ProcessLookupError:
                pass
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
            out, err = self.proc.communicate(timeout=timeout)
        return out, err

    def wait(self, timeout: float = CMD_TIMEOUT) -> tuple[int, bytes, bytes]:
        """Wait for a process that exits by itself; return (status, stdout, stderr)."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            out, err = self.stop()
            raise AssertionError(f"{self.cmd} still running after {timeout}s; stderr={err[-2000:]!r}") from None
        return self.proc.returncode, out, err


@pytest.fixture
def background() -> Iterator:
    """Start peer processes with ``background(cmd)``; all of them are killed after the test."""
    started: list[Background] = []

    def start(cmd: Sequence[str], env: dict | None = None, cwd: Path | None = None) -> Background:
        bg = Background(cmd, env=env, cwd=cwd)
        started.append(bg)
        return bg

    yield start
    for bg in started:
        bg.stop()


def wait_workers(server: object, function: bytes, count: int = 1, timeout: float = 15.0) -> None:
    """Wait until the server's `status` shows COUNT workers for FUNCTION."""
    from .wire import connect, status_table

    deadline = time.monotonic() + timeout
    with connect(server) as admin:
        while True:
            have = status_table(admin).get(function, (0, 0, 0))[2]
            if have >= count:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} worker(s) for {function!r} never registered (have {have})")
            time.sleep(0.05)


# -- peers ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def gearman_bin() -> str:
    return need_binary("gearman")


@pytest.fixture(scope="session")
def gearadmin_bin() -> str:
    return need_binary("gearadmin")


def _check(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def perl_gearman() -> str:
    """The perl binary, once Gearman::Client and Gearman::Worker load."""
    perl = need_binary("perl")
    need_peer("perl Gearman::Client/Gearman::Worker", _check([perl, "-MGearman::Client", "-MGearman::Worker", "-e1"]))
    return perl


@pytest.fixture(scope="session")
def php_gearman() -> str:
    """The php binary, once the gearman extension provides GearmanClient and GearmanWorker."""
    php = need_binary("php")
    need_peer("php gearman extension",
              _check([php, "-r", 'exit(class_exists("GearmanClient") && class_exists("GearmanWorker") ? 0 : 1);']))
    return php


def _compile(src: Path, out_dir: Path, cc: str) -> tuple[str, Path | None, str]:
    exe = out_dir / src.stem
    proc = subprocess.run([cc, "-O1", "-Wall", "-o", str(exe), str(src), "-lgearman"],
                          capture_output=True, text=True, timeout=120)
    return src.stem, (exe if proc.returncode == 0 else None), proc.stderr


@pytest.fixture(scope="session")
def c_programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every tests/interop/c/*.c compiled against libgearman (in parallel, once per session)."""
    cc = need_binary("gcc")
    need_peer("libgearman-dev (libgearman-1.0/gearman.h)", Path("/usr/include/libgearman-1.0/gearman.h").exists())
    out_dir = tmp_path_factory.mktemp("c-peers")
    sources = sorted(C_DIR.glob("*.c"))
    with ThreadPoolExecutor(max_workers=max(1, min(len(sources), os.cpu_count() or 2))) as pool:
        results = list(pool.map(lambda s: _compile(s, out_dir, cc), sources))
    failed = {name: err for name, exe, err in results if exe is None}
    if failed:
        pytest.fail(f"C peers did not compile: {failed}")
    return {name: exe for name, exe, _ in results}  # type: ignore[misc]


@pytest.fixture(params=["geartrain", "gearmand"])
def start_any(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator:
    """``start_any(*options, ours=())`` starts geartrain or gearmand (one run each) with extra options (and, for
    geartrain only, the options OURS); stopped after."""
    from tests.conftest import start_gearmand, start_geartrain

    started = []

    def start(*args: str, ours: tuple[str, ...] = ()):
        if request.param == "geartrain":
            server = start_geartrain(tmp_path, *args, *ours)
        else:
            server = start_gearmand(tmp_path, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
