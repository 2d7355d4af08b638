"""The contract suite runs every test against each backend set: embedded and real servers.

Only the backend set under test is built (``request.getfixturevalue``), so the embedded half runs
on a laptop with no server, and the real half needs PostgreSQL, Redis and Cassandra (a skip on a
laptop, a failure in CI).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import persistio as pio

BACKEND_SETS = ["embedded", "real"]
REAL_REDIS_DB = 1  # the contract suite's own database; flushed before each test


def store_urls(request: pytest.FixtureRequest, kind: str) -> dict[str, Any]:
    if kind == "embedded":
        return {}
    urls: Callable[[int], dict[str, str]] = request.getfixturevalue("real_store_urls")
    return dict(urls(REAL_REDIS_DB))


@pytest.fixture(params=BACKEND_SETS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(request: pytest.FixtureRequest, backend_kind: str, tmp_path: Path) -> Iterator[Any]:
    """Build stores on the backend set under test (several may share one data dir)."""
    urls = store_urls(request, backend_kind)
    made: list[pio.Persistio] = []

    def make(**options: Any) -> pio.Persistio:
        store = pio.Persistio(**{**urls, "data_dir": tmp_path, **options})
        made.append(store)  # closed at teardown even when setup() below fails
        store.setup()
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: Any) -> pio.Persistio:
    result: pio.Persistio = make_store()
    return result
