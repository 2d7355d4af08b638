"""Raw Redis clients for the tests, for one server (``redis://``) or a cluster (``redis+cluster://``).

The suites pick their server from the PERSISTIO_*_URL variables; ``make test-cluster`` points
them at a Redis Cluster. A cluster has database 0 only, so where a suite keeps to a database
of its own on one server, on a cluster it flushes the whole cluster instead (the cluster
suite's tests run one after another).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def is_cluster(url: str) -> bool:
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The host:port list of a ``redis+cluster://`` URL."""
    hosts = urlsplit(url).netloc.rpartition("@")[2]
    return [(h, int(p)) for h, _, p in (item.rpartition(":") for item in hosts.split(","))]


def client(url: str) -> Any:
    """``redis.Redis`` for a server, ``RedisCluster`` for a cluster (the same commands)."""
    if is_cluster(url):
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in cluster_nodes(url)])
    return redis.Redis.from_url(url)


def with_db(url: str, db: int) -> str:
    """``url`` on database ``db``; a cluster's URL as it is (it has database 0 only)."""
    if is_cluster(url):
        return url
    return urlsplit(url)._replace(path=f"/{db}").geturl()


def flush(url: str) -> None:
    """Empty the database ``url`` names; on a cluster, every master."""
    found = client(url)
    try:
        if is_cluster(url):
            found.flushall(target_nodes=RedisCluster.PRIMARIES)
        else:
            found.flushdb()
    finally:
        found.close()


def keys(found: Any, pattern: str) -> list[bytes]:
    """KEYS on a server, or on every master of a cluster."""
    if isinstance(found, RedisCluster):
        return list(found.keys(pattern, target_nodes=RedisCluster.PRIMARIES))
    return list(found.keys(pattern))
