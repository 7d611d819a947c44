"""The seed's example: our fib worker and client, the seed's C++ worker (rewritten) and `make demo --quick`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from geartrain.adminclient import AdminClient
from tests.conftest import ROOT, need_binary, need_peer

EXAMPLES = ROOT / "examples"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def fib(n: int) -> int:
    a, b = 1, 1
    for _ in range(n - 1):
        a, b = b, a + b
    return b if n >= 1 else 1


def expected_sum(n: int) -> int:
    return sum(fib(i) for i in range(1, n))


def wait_workers(address: str, n: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = AdminClient(address).status().get("fib")
        if st and st.workers >= n:
            return
        time.sleep(0.05)
    raise AssertionError("fib workers did not register")


def run_client(address: str, n: int) -> int:
    out = subprocess.run([sys.executable, str(EXAMPLES / "fib_client.py"), "--host", address, "-n", str(n)],
                         capture_output=True, timeout=60, env=ENV, check=True)
    return int(out.stdout.decode().strip().splitlines()[-1])


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.terminate()
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err.decode() if err else ""


def test_fib_python_worker_and_client(any_server):
    worker = subprocess.Popen([sys.executable, str(EXAMPLES / "fib_worker.py"), "--host", any_server.address],
                              env=ENV, stderr=subprocess.PIPE)
    try:
        wait_workers(any_server.address, 1)
        assert run_client(any_server.address, 22) == expected_sum(22)
    finally:
        err = stop(worker)
    assert "fib_worker: 21 jobs" in err  # and it stopped gracefully on SIGTERM


def test_seed_cpp_worker_serves_our_client(any_server, tmp_path: Path):
    gxx = need_binary("g++")
    need_peer("libgearman headers", Path("/usr/include/libgearman-1.0/gearman.h").exists())
    binary = tmp_path / "fib_worker"
    subprocess.run([gxx, "-O2", "-o", str(binary), str(Path(__file__).parent / "fib_worker.cc"), "-lgearman"],
                   check=True, capture_output=True, timeout=120)
    worker = subprocess.Popen([str(binary), "-h", any_server.host, "-p", str(any_server.port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_workers(any_server.address, 1)
        assert run_client(any_server.address, 30) == expected_sum(30)
    finally:
        worker.kill()
        worker.wait()


def test_demo_quick_says_what_it_does_while_it_runs():
    out = subprocess.run([sys.executable, str(EXAMPLES / "demo.py"), "--quick"], capture_output=True, timeout=120,
                         env=ENV)
    assert out.returncode == 0, out.stderr.decode()
    text = out.stdout.decode()
    assert "1 worker:" in text and "2 workers:" in text and "speedup:" in text
    assert text.strip().splitlines()[-1] == f"sum: {expected_sum(24)}"
    lines = text.splitlines()
    # off a terminal each run reports its jobs done (at once, then every --every seconds) before its result,
    # and the machine measurement is announced before it starts
    for label in ("1 worker", "2 workers"):
        progress = next(i for i, line in enumerate(lines)
                        if line.startswith(f"  {label}: ") and "of 23 jobs done" in line)
        result = next(i for i, line in enumerate(lines) if line.startswith(f"{label}: ") and " s   sum " in line)
        assert progress < result
    assert any(line.startswith("machine:   measuring") for line in lines)


def test_make_demo_installs_no_peers():
    make = need_binary("make")
    out = subprocess.run([make, "-n", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert "examples/demo.py" in out.stdout
    assert "install-peers" not in out.stdout  # the demo needs Python only: no gearmand, PHP, Perl or chromium
