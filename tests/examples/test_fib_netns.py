"""The seed's second machine: a fib worker in its own network namespace shares the work with a local one.

A veth pair joins a new namespace to the host (10.250.X.1/30 on the host side, .2 inside); the job
server listens on the host-side address; one worker runs on the host, one inside the namespace.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys

from tests.conftest import ROOT, free_port, need_binary, need_peer, wait_port
from tests.examples.test_fib import ENV, EXAMPLES, expected_sum, run_client, stop, wait_workers


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, timeout=10, check=check)


def test_worker_in_another_network_namespace(tmp_path):
    need_binary("ip")
    need_peer("root (for ip netns)", os.geteuid() == 0)
    tag = f"{os.getpid() % 100000}"
    ns, host_if, ns_if = f"gtfib{tag}", f"gth{tag}", f"gtn{tag}"
    used = ip("-o", "addr").stdout.decode()
    octet = next(x for x in random.sample(range(1, 255), 254) if f"10.250.{x}." not in used)
    host_addr, ns_addr = f"10.250.{octet}.1", f"10.250.{octet}.2"
    made = ip("netns", "add", ns, check=False)
    need_peer(f"ip netns add ({made.stderr.decode().strip()})", made.returncode == 0)
    procs: list[subprocess.Popen] = []
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        ip("link", "set", ns_if, "netns", ns)
        ip("addr", "add", f"{host_addr}/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("-n", ns, "addr", "add", f"{ns_addr}/30", "dev", ns_if)
        ip("-n", ns, "link", "set", ns_if, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "geartrain", "serve", "-L", host_addr, "-p", str(port),
                                   "--queue", "memory", "--log-file", str(tmp_path / "server.log")],
                                  cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(server)
        wait_port(port, server, host=host_addr)
        address = f"{host_addr}:{port}"
        worker = [sys.executable, str(EXAMPLES / "fib_worker.py"), "--host", address]
        local = subprocess.Popen([*worker, "--id", "local"], env=ENV, stderr=subprocess.PIPE)
        remote = subprocess.Popen(["ip", "netns", "exec", ns, *worker, "--id", "remote"], env=ENV,
                                  stderr=subprocess.PIPE)
        procs += [local, remote]
        wait_workers(address, 2)
        n = 27
        assert run_client(address, n) == expected_sum(n)
        counts = {}
        for name, proc in (("local", local), ("remote", remote)):
            err = stop(proc)
            found = re.search(r"fib_worker: (\d+) jobs", err)
            assert found, err
            counts[name] = int(found.group(1))
        assert counts["local"] > 0 and counts["remote"] > 0, counts
        assert counts["local"] + counts["remote"] == n - 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        ip("netns", "del", ns, check=False)
        ip("link", "del", host_if, check=False)
