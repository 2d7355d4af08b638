"""Fixtures of the fault tests: private and shared servers, stores, and the metrics file.

Shared servers are used with care, as other suites run on them at the same time: every test
has a redis-server of its own (``private_redis``: no shared Redis database to collide with), a
PostgreSQL database and a Cassandra keyspace of this session (``pg_database_url``,
``cassandra_keyspace``), and intents named ``fault_*``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import persistio as pio
from tests.conftest import keyspace_url

from .load import StoreFactory
from .metrics import Metrics
from .servers import PrivateRedis


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A running redis-server of this test's own (AOF, appendfsync always); gone at teardown."""
    server = PrivateRedis(tmp_path / "redis")
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def amorphous_url(cassandra_url: str, cassandra_keyspace: str) -> str:
    """The shared Cassandra, with this session's own keyspace."""
    return keyspace_url(cassandra_url, cassandra_keyspace)


@pytest.fixture
def make_store(tmp_path: Path) -> Iterator[StoreFactory]:
    """Build stores (data under tmp_path/data unless told); each is closed at teardown."""
    made: list[pio.Persistio] = []

    def make(**options: Any) -> pio.Persistio:
        store = pio.Persistio(**{"data_dir": tmp_path / "data", **options})
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def metrics(request: pytest.FixtureRequest) -> Metrics:
    return Metrics(request.node.name)
