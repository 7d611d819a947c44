"""Consistent hashing of uniques onto servers."""

from __future__ import annotations

from collections import Counter

from geartrain.hashring import HashRing

SERVERS = ["10.0.0.1:4730", "10.0.0.2:4730", "10.0.0.3:4730"]
KEYS = [f"job-{i}".encode() for i in range(3000)]


def test_same_list_same_ring_in_any_order():
    a, b = HashRing(SERVERS), HashRing(list(reversed(SERVERS)))
    assert [a.node(k) for k in KEYS] == [b.node(k) for k in KEYS]


def test_keys_spread_over_every_server():
    counts = Counter(HashRing(SERVERS).node(k) for k in KEYS)
    assert set(counts) == set(SERVERS)
    assert min(counts.values()) > len(KEYS) / len(SERVERS) * 0.7


def test_removing_a_server_moves_only_its_keys():
    full, less = HashRing(SERVERS), HashRing(SERVERS[:2])
    for k in KEYS:
        if full.node(k) != SERVERS[2]:
            assert less.node(k) == full.node(k)


def test_walk_is_the_failover_order():
    ring = HashRing(SERVERS)
    less = HashRing([s for s in SERVERS if s != SERVERS[0]])
    for k in KEYS[:200]:
        order = list(ring.walk(k))
        assert order[0] == ring.node(k)
        assert sorted(order) == sorted(SERVERS)
        # with the owner gone, the next in the walk is where the key lands
        if order[0] == SERVERS[0]:
            assert less.node(k) == order[1]
