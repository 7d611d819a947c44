"""`geartrain submit` on a real terminal (a pty): its results stay on screen, progress bars or not (issue #13).

The bytes the command writes to the pty are played on a small terminal model (``screen``), which knows
the few control sequences rich's progress display uses and refuses any other, so an erased result shows
as a missing line.
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import threading
import time

import pytest

from geartrain.worker import Worker
from tests.cli.util import env
from tests.conftest import ROOT

CSI = re.compile(r"\x1b\[(\??)([0-9;]*)([A-Za-z])")


def screen(data: bytes, width: int = 80) -> list[str]:
    """The lines a terminal shows after DATA (carriage return, newline, cursor up/down, erase in line, and
    sequences that only style or hide the cursor)."""
    lines: list[list[str]] = [[]]
    row = col = 0
    i = 0
    text = data.decode(errors="replace")
    while i < len(text):
        if text[i] == "\x1b":
            m = CSI.match(text, i)
            assert m, f"unknown escape sequence at {text[i:i + 10]!r}"
            private, params, final = m.group(1), m.group(2), m.group(3)
            n = int(params) if params.isdigit() else 1
            if private or final == "m":
                pass  # cursor visibility, colours
            elif final == "A":
                row = max(0, row - n)
            elif final == "B":
                row += n
            elif final == "K":
                mode = int(params or 0)
                line = lines[row]
                if mode == 0:
                    del line[col:]
                elif mode == 1:
                    line[:col] = [" "] * min(col, len(line))
                else:
                    line.clear()
            elif final == "G":
                col = n - 1
            else:
                raise AssertionError(f"unexpected control sequence {m.group(0)!r}")
            i = m.end()
            while len(lines) <= row:
                lines.append([])
            continue
        ch = text[i]
        i += 1
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row += 1
            col = 0
            while len(lines) <= row:
                lines.append([])
        elif ch >= " ":
            line = lines[row]
            while len(line) < col:
                line.append(" ")
            if col < len(line):
                line[col] = ch
            else:
                line.append(ch)
            col += 1
            if col >= width:
                row, col = row + 1, 0
                while len(lines) <= row:
                    lines.append([])
    shown = ["".join(line).rstrip() for line in lines]
    while shown and not shown[-1]:
        shown.pop()
    return shown


def on_a_terminal(*args: str, timeout: float = 30) -> bytes:
    """Run `geartrain ARGS` with stdin, stdout and stderr on a pty; everything it wrote there."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "geartrain", *args], stdin=slave, stdout=slave, stderr=slave,
                            cwd=ROOT, env=env(TERM="xterm-256color", COLUMNS="80", LINES="24"))
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the command exited and closed the pty
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(max(0.1, deadline - time.monotonic())) == 0, out
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return out


def test_screen_model_shows_what_an_erase_removes():
    assert screen(b"olleh\r\x1b[2K\x1b[?25h\r") == []
    assert screen(b"bar\r\nolleh\r\n\x1b[1A\x1b[2Kx") == ["bar", "x"]


def slow_reverse(job):
    job.send_status(1, 2)
    time.sleep(0.3)  # long enough for the bar to be drawn
    job.send_status(2, 2)
    return job.data[::-1]


@pytest.fixture
def reverser(geartrain):
    """Our server, with a worker for reverse (at once) and slowrev (with progress)."""
    worker = Worker(geartrain.address)
    worker.register("reverse", lambda job: job.data[::-1])
    worker.register("slowrev", slow_reverse)
    thread = threading.Thread(target=worker.work, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    yield geartrain.address
    worker.stop()
    thread.join(10)


def test_the_result_stays_on_screen(reverser):
    out = on_a_terminal("submit", "--servers", reverser, "-f", "reverse", "hello")
    assert screen(out) == ["olleh"], out


def test_results_stay_on_screen_around_progress_bars(reverser):
    out = on_a_terminal("submit", "--servers", reverser, "-f", "slowrev", "hello", "world")
    assert "slowrev" in out.decode()  # the progress bar was drawn
    assert screen(out) == ["olleh", "dlrow"], out
