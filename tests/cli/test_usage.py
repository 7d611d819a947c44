"""A sub-command's bad argument shows that sub-command's usage, not the top-level one (issue #13)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from geartrain.cli import COMMANDS, main

#: each sub-command with the arguments it requires, so only the unknown option is wrong
VALID = {"serve": [], "submit": ["-f", "x"], "work": ["-f", "x"], "admin": ["status"], "top": [],
         "queue": ["count", "sqlite:///q.sqlite"], "result": ["H:x:1"]}


@pytest.mark.parametrize("name", COMMANDS)
def test_an_unknown_option_shows_the_sub_commands_usage(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([name, *VALID[name], "--frobnicate"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: geartrain {name} ")
    assert err.rstrip().endswith(f"geartrain {name}: error: unrecognized arguments: --frobnicate")


def test_an_unknown_option_before_any_command_shows_the_top_level_usage(capsys):
    with pytest.raises(SystemExit):
        main(["--frobnicate"])
    assert capsys.readouterr().err.startswith("usage: geartrain [-h]")


@pytest.mark.parametrize("argv", [["serve", "-p", "99999"], ["serve", "--http-port", "70000"], ["serve", "-p", "x"]])
def test_serve_refuses_a_port_out_of_range(argv):
    out = subprocess.run([sys.executable, "-m", "geartrain", *argv], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "usage: geartrain serve" in out.stderr
    assert "out of range" in out.stderr or "not a port number" in out.stderr


def test_work_refuses_an_empty_function_name():
    out = subprocess.run([sys.executable, "-m", "geartrain", "work", "-f", "", "--", "cat"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2 and "a function name cannot be empty" in out.stderr


def test_the_worker_library_refuses_an_empty_function_name():
    from geartrain.worker import AsyncWorker

    with pytest.raises(ValueError, match="cannot be empty"):
        AsyncWorker(["127.0.0.1:1"]).register("", lambda job: b"")
