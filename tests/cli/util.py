"""Running `geartrain` sub-commands as processes, for the CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k != "GEARMAN_SERVER"}
    e["PYTHONPATH"] = str(ROOT)
    e.update(extra)
    return e


def cli(*args: str, input: bytes | None = None, timeout: float = 30, **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "geartrain", *args], input=input, capture_output=True,
                          timeout=timeout, cwd=ROOT, env=env(**extra_env))


def start(*args: str, **extra_env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "geartrain", *args], cwd=ROOT, env=env(**extra_env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


class InProcess:
    """Runs `geartrain` sub-commands inside the test process (much faster than a new interpreter)."""

    def __init__(self, capsysbinary, monkeypatch) -> None:
        self.cap = capsysbinary
        self.mp = monkeypatch

    def __call__(self, *args: str, input: bytes = b"", **extra_env: str) -> subprocess.CompletedProcess:
        import io

        from geartrain.cli import main

        self.mp.delenv("GEARMAN_SERVER", raising=False)
        for k, v in extra_env.items():
            self.mp.setenv(k, v)
        self.mp.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(input)))
        self.cap.readouterr()
        code = main(list(args))
        out, err = self.cap.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)
