"""`geartrain serve` option parsing: gearmand's names and defaults, config file, checks (no server started)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from geartrain.cli import build_parser
from geartrain.cli.serve import _merge_config_file, options_from_args

ROOT = Path(__file__).resolve().parents[2]


def _parse(*argv: str):
    return build_parser().parse_args(["serve", "--queue", "memory", *argv])


def test_defaults():
    o = options_from_args(_parse())
    assert (o.listen, o.port, o.job_retries, o.worker_wakeup, o.exceptions) == ("127.0.0.1", 4730, 0, 1, False)
    assert o.max_packet_size == 64 * 1024 * 1024 and o.handle_prefix is None
    assert o.busy_poll == 50e-6
    assert options_from_args(_parse("--busy-poll", "0")).busy_poll == 0.0
    assert options_from_args(_parse("--busy-poll", "200")).busy_poll == 200e-6
    assert o.grab_wait == 150e-6
    assert options_from_args(_parse("--grab-wait", "0")).grab_wait == 0.0


def test_gearmand_spellings(monkeypatch):
    monkeypatch.setenv("GEARMAND_PORT", "4999")
    args = _parse("--listen=0.0.0.0", "-j", "3", "--job-handle-prefix", "H:box", "-w", "0", "--exceptions",
                  "-t", "8", "-R", "--verbose", "info", "-l", "none", "--keepalive", "--keepalive-idle", "30",
                  "--max-packet-size", "1M", "--hashtable-buckets", "7")
    o = options_from_args(args)
    assert (o.listen, o.port, o.job_retries, o.handle_prefix, o.worker_wakeup) == ("0.0.0.0", 4999, 3, b"H:box", 0)
    assert (o.exceptions, o.verbose, o.log_file, o.keepalive, o.keepalive_idle) == (True, "INFO", "none", True, 30)
    assert o.max_packet_size == 1024 * 1024 and o.hash_buckets == 7


def test_config_file_fills_what_the_command_line_left(tmp_path: Path):
    conf = tmp_path / "gearmand.conf"
    conf.write_text("# gearmand style\n--port 4811 --job-retries=5\n-L 10.0.0.1\n")
    args = _parse("--config-file", str(conf), "-L", "127.0.0.2")
    _merge_config_file(args)
    o = options_from_args(args)
    assert (o.port, o.job_retries, o.listen) == (4811, 5, "127.0.0.2")


def test_check_args_and_bad_prefix():
    ok = subprocess.run([sys.executable, "-m", "geartrain", "serve", "--queue", "memory", "--check-args"],
                        cwd=ROOT, capture_output=True, timeout=60)
    assert ok.returncode == 0
    bad = subprocess.run([sys.executable, "-m", "geartrain", "serve", "--queue", "memory", "--check-args",
                          "--job-handle-prefix", "P" * 60], cwd=ROOT, capture_output=True, timeout=60)
    assert bad.returncode == 2 and b"too long" in bad.stderr


def test_unknown_verbose_level_is_refused():
    with pytest.raises(SystemExit):
        _parse("--verbose", "LOUD")
