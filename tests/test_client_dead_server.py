"""A client against a server that is down fails at once and says why (issue #13): a refused connection is
known at once, so it is neither waited for nor retried; a server backing off after a refusal is tried once
more before a submission gives up, so a server that came back is used at once."""

from __future__ import annotations

import pytest

from geartrain.client import Client
from geartrain.errors import NoServerAvailable
from geartrain.transport import Backoff
from tests.conftest import free_port, start_geartrain


@pytest.fixture
def failed_connects(monkeypatch):
    """Counts the connect attempts that failed (each starts a backoff)."""
    seen: list[float] = []
    next_delay = Backoff.next_delay
    monkeypatch.setattr(Backoff, "next_delay", lambda self: seen.append(1) or next_delay(self))
    return seen


def test_a_refused_connection_fails_the_submission_without_retrying(failed_connects):
    dead = f"127.0.0.1:{free_port()}"
    with Client(dead) as client:
        with pytest.raises(NoServerAvailable, match="connection refused") as caught:
            client.submit("rev", b"x")
    assert dead in str(caught.value) and "Errno" not in str(caught.value)
    assert len(failed_connects) == 1  # one attempt: no waiting for the server to come up, by default


def test_a_server_that_refused_is_tried_again_by_the_next_submission(tmp_path, failed_connects):
    port = free_port()
    with Client(f"127.0.0.1:{port}", max_backoff=60) as client:
        for _ in range(8):  # a backoff of about 13 s by now, had the refusals started one
            with pytest.raises(NoServerAvailable):
                client.submit_background("later", b"x")
        assert len(failed_connects) == 8  # each submission tried the server
        server = start_geartrain(tmp_path, port=port)
        try:
            assert client.submit_background("later", b"x").handle
        finally:
            server.stop()
