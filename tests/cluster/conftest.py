"""Fixtures of the cluster tests: the clusters' URLs (from ``scripts/services env --cluster``).

These tests run only under ``pytest --cluster`` (``make test-cluster``); there, a cluster that
does not answer is a failure, never a skip: the run asked for it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import persistio as pio
from tests import redis_clients
from tests.conftest import cassandra_contact, cassandra_replication, keyspace_url
from tests.faults.load import StoreFactory
from tests.faults.metrics import Metrics


def _cluster_url(names: tuple[str, ...], what: str) -> str:
    url = next((os.environ[n] for n in names if os.environ.get(n)), None)
    if url is None:
        pytest.fail(f"{what}: set {' or '.join(names)} (scripts/services env --cluster)")
    return url


def _answers(host: str, port: int, what: str) -> None:
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        pytest.fail(
            f"{what} on {host}:{port} does not answer ({exc}): scripts/services start --cluster"
        )


@pytest.fixture(scope="session")
def cluster_redis_url() -> str:
    url = _cluster_url(("PERSISTIO_CLUSTER_REDIS_URL", "PERSISTIO_TRANSITORY_URL"), "Redis Cluster")
    if not redis_clients.is_cluster(url):
        pytest.fail(f"{url} is not a redis+cluster:// URL (scripts/services env --cluster)")
    _answers(*redis_clients.cluster_nodes(url)[0], "Redis Cluster")
    return url


@pytest.fixture(scope="session")
def cluster_cassandra_url() -> str:
    url = _cluster_url(
        ("PERSISTIO_CLUSTER_CASSANDRA_URL", "PERSISTIO_AMORPHOUS_URL"), "Cassandra cluster"
    )
    hosts, _ = cassandra_contact(url)
    if len(hosts) < 2 or cassandra_replication(url) < 2:
        pytest.fail(f"{url} is not a Cassandra cluster URL with ?replication= (env --cluster)")
    _answers(*hosts[0], "Cassandra cluster")
    return url


@pytest.fixture
def amorphous_url(cluster_cassandra_url: str, cassandra_keyspace: str) -> str:
    """The Cassandra cluster, on this session's keyspace (replicated on every node)."""
    return keyspace_url(cluster_cassandra_url, cassandra_keyspace)


@pytest.fixture
def make_store(tmp_path: Path) -> Iterator[StoreFactory]:
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
