"""Log records of job events carry what operators filter on as fields of their own in `--log-format json`:
event, function, handle (when there is a job) and peer (with its fd), next to the message, which stays the
plain-text line it always was. A real server for the lifecycle's events (a job timed out on its worker, a job
dropped after its -j tries); the state harness for a wake-up passed on; the ACL hook for a denial.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from geartrain.protocol.packets import T
from geartrain.server.acl import load
from tests.conftest import start_geartrain
from tests.interop.wire import Wire, wait_for
from tests.server.helpers import Harness


def _events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


@pytest.mark.parametrize("fmt", ["json", "plain"])
def test_timed_out_and_dropped_jobs_carry_their_fields(tmp_path: Path, fmt: str):
    server = start_geartrain(tmp_path, "-j", "2", "--log-format", fmt, "--verbose", "NOTICE")
    try:
        with Wire(server.host, server.port) as client, Wire(server.host, server.port) as slow:
            handle = client.submit(T.SUBMIT_JOB_BG, b"resize", b"img-1", b"x").decode()
            slow.send(T.CAN_DO_TIMEOUT, b"resize", b"1000")  # one second
            slow.send(T.GRAB_JOB)
            slow.expect(T.JOB_ASSIGN)
            assert wait_for(lambda: "timed out" in server.log.read_text(), timeout=10)
            with Wire(server.host, server.port) as leaving:
                leaving.send(T.CAN_DO, b"resize")
                leaving.send(T.GRAB_JOB)
                leaving.expect(T.JOB_ASSIGN)
            assert wait_for(lambda: "max retry count" in server.log.read_text(), timeout=10)
    finally:
        server.stop()
    text = server.log.read_text()
    if fmt == "plain":  # the lines as they were: no field added to them
        assert f"NOTICE Job {handle} of resize timed out after 1s on worker 127.0.0.1 fd " in text
        assert f"NOTICE Dropped job due to max retry count: {handle} resize after 2 tries (worker disconnected)" in text
        assert "{" not in text
        return
    events = {e["event"]: e for e in _events(server.log) if "event" in e}
    timed_out, dropped = events["job_timed_out"], events["job_dropped"]
    assert timed_out["message"].startswith(f"Job {handle} of resize timed out after 1s on worker 127.0.0.1 fd ")
    assert (timed_out["function"], timed_out["handle"], timed_out["peer"]) == ("resize", handle, "127.0.0.1")
    assert isinstance(timed_out["fd"], int) and timed_out["level"] == "NOTICE"
    assert (dropped["function"], dropped["handle"], dropped["peer"]) == ("resize", handle, "127.0.0.1")
    assert dropped["tries"] == 2 and dropped["reason"] == "worker disconnected" and dropped["fd"] != timed_out["fd"]


def test_a_wakeup_passed_on_carries_its_fields():
    h = Harness(wake_timeout=0.1)
    notes: list[tuple[str, dict]] = []
    h.state.life.notice = lambda msg, **fields: notes.append((msg, fields))
    sleeper = h.worker(b"f")
    h.send(sleeper, T.PRE_SLEEP)
    other = h.worker(b"f")
    h.send(other, T.PRE_SLEEP)
    h.submit(h.peer(), b"f", ptype=T.SUBMIT_JOB_BG)
    h.tick(0.2)
    ((message, fields),) = notes
    assert message.startswith(f"Worker 127.0.0.1 fd {sleeper.fd} did not ask for a job within 0.1s")
    assert fields == {"event": "wakeup_passed", "function": b"f", "peer": "127.0.0.1", "fd": sleeper.fd}


def test_an_acl_denial_carries_its_fields(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    rules = tmp_path / "acl.toml"
    rules.write_text('[default]\nsubmit = ["public.*"]\n')
    acl = load(str(rules))
    peer = Harness().peer()
    caplog.set_level(logging.WARNING, logger="geartrain")
    assert not acl.state_hook(peer, "submit", b"secret")
    (record,) = [r for r in caplog.records if "permission denied" in r.getMessage()]
    assert (record.event, record.function, record.peer, record.fd, record.action) == \
        ("permission_denied", b"secret", "127.0.0.1", peer.fd, "submit")
