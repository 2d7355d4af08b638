"""Driver sessions as a careful engineer opens them, shared by the raw arm and the harness."""

from __future__ import annotations

import logging
import time
from typing import Any

from .settings import Endpoints

# Cassandra's default; the benchmark's keyspace uses SimpleStrategy, one replica.
LOCAL_DC = "datacenter1"


def quiet_driver_logs() -> None:
    """cassandra-driver logs every reconnection and protocol detail at WARNING; keep errors."""
    logging.getLogger("cassandra").setLevel(logging.ERROR)


def cassandra_cluster(endpoints: Endpoints) -> Any:
    """A cluster with the same policy persistio uses: token aware, LOCAL_QUORUM, 10 s timeout."""
    from cassandra import ConsistencyLevel
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

    hosts, port = endpoints.cassandra_hosts
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=LOCAL_DC)),
        consistency_level=ConsistencyLevel.LOCAL_QUORUM,
        request_timeout=10.0,
    )
    return Cluster(
        hosts,
        port=port,
        protocol_version=5,
        connect_timeout=10,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )


def cassandra_connect(endpoints: Endpoints, wait_seconds: float = 90.0) -> tuple[Any, Any]:
    """(cluster, session), retrying while the node does not answer: on the shared test servers
    another suite may have frozen it for a while (tests/faults SIGSTOPs Cassandra)."""
    from cassandra.cluster import NoHostAvailable

    deadline = time.monotonic() + wait_seconds
    while True:
        cluster = cassandra_cluster(endpoints)
        try:
            return cluster, cluster.connect()
        except NoHostAvailable:
            cluster.shutdown()
            if time.monotonic() >= deadline:
                raise
            time.sleep(2.0)
