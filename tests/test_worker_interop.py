"""Our worker with other Gearman clients: PHP's GearmanClient (the pecl extension over libgearman)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import need_peer
from tests.test_client import FUNCTIONS, worker_thread

pytestmark = pytest.mark.interop

PHP_CLIENT = r"""<?php
$c = new GearmanClient();
$c->addServer($argv[1], (int)$argv[2]);
$r = $c->doNormal("rev", "hello php");
echo "normal:", $r, ":", $c->returnCode() == GEARMAN_SUCCESS ? "ok" : "rc" . $c->returnCode(), "\n";
$h = $c->doBackground("rev", "in the background");
echo "background:", substr($h, 0, 2), ":", $c->returnCode() == GEARMAN_SUCCESS ? "ok" : "bad", "\n";
$c->doNormal("refuse", "x");
echo "fail:", $c->returnCode() == GEARMAN_WORK_FAIL ? "ok" : "rc" . $c->returnCode(), "\n";
$c->setCompleteCallback(function ($task) { echo "task:", $task->unique(), "=", $task->data(), "\n"; });
for ($i = 0; $i < 5; $i++) { $c->addTask("rev", "t$i", null, "u$i"); }
$ok = $c->runTasks();
echo "tasks:", $ok ? "ok" : "bad", "\n";
$c->setStatusCallback(function ($task) {
    echo "status:", $task->taskNumerator(), "/", $task->taskDenominator(), "\n";
});
$c->addTask("progress", "p");
$c->runTasks();
"""


def test_php_client_with_our_worker(any_server, tmp_path):
    php = shutil.which("php")
    need_peer("php", bool(php))
    has_ext = subprocess.run([php, "-r", "exit(class_exists('GearmanClient') ? 0 : 1);"]).returncode == 0
    need_peer("php gearman extension", has_ext)
    script = tmp_path / "client.php"
    script.write_text(PHP_CLIENT)
    with worker_thread(any_server.address, FUNCTIONS, concurrency=2):
        out = subprocess.run([php, str(script), any_server.host, str(any_server.port)], capture_output=True,
                             timeout=30)
    lines = out.stdout.decode().splitlines()
    assert out.returncode == 0, out.stderr.decode()
    assert "normal:php olleh:ok" in lines
    assert "background:H::ok" in lines
    assert "fail:ok" in lines
    assert sorted(ln for ln in lines if ln.startswith("task:u")) == [f"task:u{i}={i}t" for i in range(5)]
    assert any(ln.startswith("task:") and ln.endswith("=whole") for ln in lines)
    assert "tasks:ok" in lines
    assert "status:1/2" in lines and "status:2/2" in lines
