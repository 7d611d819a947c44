"""Server addresses, server lists and backoff (geartrain.transport)."""

from __future__ import annotations

import pytest

from geartrain.transport import Backoff, normalize_servers, parse_address


@pytest.mark.parametrize("spec, expected", [
    ("host1", ("host1", 4730)),
    ("host1:4731", ("host1", 4731)),
    (":4732", ("127.0.0.1", 4732)),
    ("[::1]:4733", ("::1", 4733)),
    ("[::1]", ("::1", 4730)),
    ("fe80::1", ("fe80::1", 4730)),
])
def test_parse_address(spec, expected):
    assert parse_address(spec) == expected


def test_server_lists(monkeypatch):
    assert normalize_servers(["a:1,b", "a:1", " c:3 "]) == ["a:1", "b:4730", "c:3"]
    assert normalize_servers("[::1]:5") == ["[::1]:5"]
    assert normalize_servers(None) == ["127.0.0.1:4730"]
    monkeypatch.setenv("GEARMAN_SERVER", "x:1,y:2")
    assert normalize_servers(None, env="GEARMAN_SERVER") == ["x:1", "y:2"]
    assert normalize_servers("z", env="GEARMAN_SERVER") == ["z:4730"]
    with pytest.raises(ValueError):
        normalize_servers(",")


def test_backoff_grows_to_its_maximum_and_resets():
    b = Backoff(initial=0.1, maximum=1.0)
    delays = [b.next_delay() for _ in range(8)]
    assert 0.08 <= delays[0] <= 0.12
    assert all(d <= 1.2 for d in delays) and delays[-1] >= 0.8
    assert delays[3] > delays[0]
    b.reset()
    assert b.next_delay() <= 0.12


@pytest.mark.parametrize("spec", ["h:99999", "h:0", "[::1]:65536", "h:http"])
def test_a_port_out_of_range_is_refused_with_its_reason(spec):
    with pytest.raises(ValueError, match="bad port"):
        normalize_servers(spec)
