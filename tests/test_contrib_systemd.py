"""contrib/systemd/geartrain.service: `systemd-analyze verify` accepts it (with ExecStart pointed at this checkout's
geartrain, which verify needs to exist), its options are ones `geartrain serve` takes, it asks for what the
server does (Type=notify, a graceful stop by SIGUSR1, SIGHUP to reopen the log, the watchdog) and for the
hardening we promise, and the README shows it as it is.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, need_binary

UNIT = ROOT / "contrib" / "systemd" / "geartrain.service"
PROGRAM = "/usr/local/bin/geartrain"


def settings(text: str) -> dict[str, list[str]]:
    """KEY -> its values, in order (continuation lines joined, comments left out)."""
    out: dict[str, list[str]] = {}
    logical = text.replace("\\\n", " ")
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key, []).append(value.strip())
    return out


def geartrain_binary() -> str:
    found = Path(sys.executable).with_name("geartrain")
    assert found.exists(), found
    return str(found)


def test_systemd_analyze_verify_passes(tmp_path: Path):
    analyze = need_binary("systemd-analyze")
    unit = tmp_path / "geartrain.service"
    unit.write_text(UNIT.read_text().replace(PROGRAM, geartrain_binary()))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0 and not done.stderr.strip(), done.stdout + done.stderr
    # and as shipped, it fails only for want of the program (verify needs it installed)
    shipped = subprocess.run([analyze, "verify", str(UNIT)], capture_output=True, text=True, timeout=60,
                             cwd=tmp_path)
    if not Path(PROGRAM).exists():
        assert shipped.stderr.strip() == f"geartrain.service: Command {PROGRAM} is not executable: " \
                                         "No such file or directory", shipped.stderr


def test_its_options_are_ones_geartrain_serve_takes(tmp_path: Path):
    (command,) = settings(UNIT.read_text())["ExecStart"]
    argv = shlex.split(command.replace("%S", str(tmp_path)))
    assert argv[:2] == [PROGRAM, "serve"]
    done = subprocess.run([geartrain_binary(), *argv[1:], "--check-args"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_it_asks_for_what_the_server_does_and_the_hardening():
    s = {key: values[-1] for key, values in settings(UNIT.read_text()).items()}
    assert s["Type"] == "notify" and s["WatchdogSec"] and s["KillSignal"] == "SIGUSR1" and s["TimeoutStopSec"]
    assert s["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert s["DynamicUser"] == "yes" and s["StateDirectory"] == "geartrain"
    assert "sqlite:///%S/geartrain/" in s["ExecStart"]  # the queue is in the state directory
    for key, value in {"ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
                       "ProtectHome": "yes", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
                       "CapabilityBoundingSet": ""}.items():
        assert s[key] == value, key


def test_the_readme_shows_the_unit_as_it_is():
    readme = (ROOT / "README.md").read_text()
    assert "```ini\n" + UNIT.read_text() + "```\n" in readme
