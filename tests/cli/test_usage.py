"""A sub-command's bad argument shows that sub-command's usage, not the top-level one (issue #13)."""

from __future__ import annotations

import pytest

from geartrain.cli import COMMANDS, main

#: each sub-command with the arguments it requires, so only the unknown option is wrong
VALID = {"serve": [], "submit": ["-f", "x"], "work": ["-f", "x"], "admin": ["status"], "top": []}


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
