"""docs/migrating.md's commands, run as written: every fenced block marked ```` ```sh test ```` runs, in the order of
the page, in one bash (``set -euo pipefail``), with the variables of the page's ```` ```sh site ```` block set to the
test's own (a temporary directory, free ports on 127.0.0.1, a fresh PostgreSQL table); the site block must name
exactly those variables, so the page and the test cannot drift apart.

The deployment the page starts from, made here: the real gearmand 1.1.20 on the libsqlite3 queue, holding ten
background jobs of `resize` and five of `report`. What the page promises is checked after it ran: gearmand's jobs
ran on geartrain, the queue moved to PostgreSQL and back, and gearmand ran the rest.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import GEARMAND, ROOT, Server, free_port, need_binary, wait_port
from tests.interop.test_queue_migration import gearman
from tests.server.store.backends import Backend, need_service

pytestmark = [pytest.mark.interop, pytest.mark.timeout(240)]

PAGE = ROOT / "docs" / "migrating.md"


def blocks(text: str, mark: str) -> list[str]:
    return re.findall(rf"^```sh {mark}\n(.*?)^```$", text, flags=re.S | re.M)


def site_names(text: str) -> list[str]:
    (site,) = blocks(text, "site")
    return re.findall(r"^([A-Z_]+)=", site, flags=re.M)


def test_the_page_marks_its_commands():
    text = PAGE.read_text()
    fences = re.findall(r"^```(\S*)(?: (\w+))?$", text, flags=re.M)
    # every shell block is either the site's names or run by the test (closing fences are bare)
    assert {(lang, mark) for lang, mark in fences if lang} == {("sh", "test"), ("sh", "site")}
    assert len(blocks(text, "test")) >= 6


def _stop(pid_file: Path) -> None:
    try:
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
    except (OSError, ValueError):
        pass


def test_every_command_of_the_page_runs(tmp_path: Path):
    need_binary(GEARMAND)
    need_binary("gearadmin")
    need_binary("curl")
    need_service("postgres")
    text = PAGE.read_text()
    pg = Backend("postgres", tmp_path)
    (tmp_path / "gearman").mkdir()
    state = tmp_path / "state"
    state.mkdir()
    port = free_port()
    names = {
        "LISTEN": "127.0.0.1", "PORT": str(port), "HTTP_PORT": str(free_port()), "STATE": str(state),
        "GEARMAND_DB": str(tmp_path / "gearman" / "queue.sqlite"),
        "GEARMAND_PIDFILE": str(tmp_path / "gearman" / "gearmand.pid"), "PGURL": pg.url,
    }
    assert sorted(site_names(text)) == sorted(names)

    # the deployment before the switch
    subprocess.run([GEARMAND, "-d", "-L", "127.0.0.1", "-p", str(port), "-q", "libsqlite3", "--libsqlite3-db",
                    names["GEARMAND_DB"], "--pid-file", names["GEARMAND_PIDFILE"], "-l", str(tmp_path / "gd.log")],
                   check=True, timeout=30)
    gd = Server("gearmand", "127.0.0.1", port, None, tmp_path / "gd.log")  # type: ignore[arg-type]
    wait_port(port)
    assert gearman(gd, "-b", "-f", "resize", *[f"img{i}" for i in range(10)]).returncode == 0
    assert gearman(gd, "-b", "-f", "report", *[f"r{i}" for i in range(5)]).returncode == 0

    script = "set -euo pipefail\n" + "\n".join(blocks(text, "test"))
    env = {**os.environ, **names, "PATH": f"{Path(sys.executable).parent}:/usr/sbin:{os.environ['PATH']}"}
    try:
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=200, env=env,
                              cwd=tmp_path)
    finally:
        _stop(state / "geartrain.pid")
        _stop(Path(names["GEARMAND_PIDFILE"]))
        asyncio.run(pg.drop())
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert out.startswith("report\t5\nresize\t10\n"), out  # what gearmand left, counted
    assert '"ready":true' in out  # geartrain replayed it and is ready
    assert "report\t5\t0\t0\nresize\t0\t0\t0\n.\n" in out  # gearadmin --status after resize drained
    assert "moved 5 job(s) from sqlite" in done.stderr and "moved 5 job(s) from postgres" in done.stderr
    # gearmand ran the five report jobs it got back, and the table is empty
    assert "replayed 15 job(s)" in (state / "geartrain.log").read_text()
    count = subprocess.run([sys.executable, "-m", "geartrain", "queue", "count", f"sqlite:///{names['GEARMAND_DB']}"],
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert count.stdout == "" and count.stderr.startswith("0 job(s)"), count
