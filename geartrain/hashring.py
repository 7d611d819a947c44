"""Consistent hashing of job uniques onto job servers.

Every client that is given the same server list builds the same ring, so a unique always goes to
the same server (while it is up): each server gets ``replicas`` points on a 64-bit circle, placed
by hashing ``"host:port-i"`` with BLAKE2b; a key goes to the first point clockwise of its own hash.
``walk(key)`` yields every server once in ring order from there, which is the failover order.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterator, Sequence


def _hash(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class HashRing:
    """A ring of server names (strings such as ``"10.0.0.1:4730"``)."""

    __slots__ = ("nodes", "_points", "_owners")

    def __init__(self, nodes: Sequence[str], replicas: int = 160) -> None:
        self.nodes = list(dict.fromkeys(nodes))
        pairs = sorted((_hash(f"{node}-{i}".encode()), node) for node in self.nodes for i in range(replicas))
        self._points = [p for p, _ in pairs]
        self._owners = [n for _, n in pairs]

    def node(self, key: bytes) -> str:
        """The server KEY belongs to."""
        if not self._points:
            raise LookupError("empty ring")
        i = bisect.bisect(self._points, _hash(key)) % len(self._points)
        return self._owners[i]

    def walk(self, key: bytes) -> Iterator[str]:
        """Every server once, starting with KEY's own, in ring order (the failover order)."""
        if not self._points:
            return
        start = bisect.bisect(self._points, _hash(key))
        seen: set[str] = set()
        n = len(self._points)
        for k in range(n):
            owner = self._owners[(start + k) % n]
            if owner not in seen:
                seen.add(owner)
                yield owner
                if len(seen) == len(self.nodes):
                    return
