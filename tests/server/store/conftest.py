"""The durable-queue backends as fixtures: a fresh table (or Redis prefix) per test, dropped afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server.store.backends import KINDS, Backend, fresh_backend


@pytest.fixture(params=KINDS)
def backend(request: pytest.FixtureRequest, tmp_path) -> Iterator[Backend]:
    yield from fresh_backend(request.param, tmp_path)


@pytest.fixture(params=[k for k in KINDS if k != "redis"])
def table_backend(request: pytest.FixtureRequest, tmp_path) -> Iterator[Backend]:
    """The backends that keep jobs in an SQL table."""
    yield from fresh_backend(request.param, tmp_path)


@pytest.fixture(params=[k for k in KINDS if k != "sqlite"])
def networked_backend(request: pytest.FixtureRequest, tmp_path) -> Iterator[Backend]:
    """The backends reached over a network connection (not the embedded SQLite)."""
    yield from fresh_backend(request.param, tmp_path)
