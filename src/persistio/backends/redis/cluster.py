"""A Redis Cluster as a backend: the transitory streams and volatile values spread over masters.

``redis+cluster://h1:7000,h2:7001/`` (``rediss+cluster://`` for TLS) names any nodes of the
cluster; redis-py's ``RedisCluster`` finds the rest and keeps the slot map. Writes are one
script call per hash slot and one packed request per master (``redis_cluster_writes``).

The other operations (claim, ack, release, dead letters, stats, reads) are the single server's
own (``RedisStreams``, ``RedisCache``): each touches one stream's keys, which share a slot, and
``RedisCluster`` routes it. Nothing connects until first use.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from persistio.backends.base import Options
from persistio.backends.redis.cache import RedisCache
from persistio.backends.redis.client import (
    ClusterEndpoint,
    parse_cluster_url,
    script,
    unavailable_on_outage,
)
from persistio.backends.redis.cluster_writes import ClusterWrites
from persistio.backends.redis.scripts import WRITE_SCRIPT
from persistio.backends.redis.streams import RedisStreams
from persistio.config.urls import masked


class RedisClusterStore(ClusterWrites, RedisStreams, RedisCache):
    """Transitory and volatile tiers on a Redis Cluster (see the module docstring).

    Args:
        url: ``redis+cluster://[user:password@]host:port[,host:port...]/`` (database 0 only, the
            one a cluster has), or ``rediss+cluster://`` for TLS.
        options: Timeouts (every call is bounded by ``request_timeout``) and the dedup window.
        setting: Names the setting in a ``ConfigError`` for a malformed URL.
    """

    tiers: ClassVar[frozenset[str]] = frozenset({"transitory", "volatile"})
    bounded: ClassVar[bool] = True  # socket timeouts bound every call
    concurrent: ClassVar[bool] = False

    def __init__(self, url: str, options: Options, setting: str, tier: str = "transitory") -> None:
        self._tier = tier
        self._where = masked(url)
        self.endpoint: ClusterEndpoint = parse_cluster_url(url, setting)
        self._options = options
        self._window_ms = max(1, round(options.dedup_window_seconds * 1000))
        self._keys: dict[str, str] = {}
        self._stream_slots: dict[str, int] = {}  # stream name -> its slot
        self._lock = threading.Lock()
        self._client: RedisCluster | None = None
        self._sha = script(WRITE_SCRIPT).sha  # loaded on each master at its first NOSCRIPT
        self._stream_scripts()
        self._replicas_wanted = 0
        # entries trimmed from streams by max_len / max_age, per stream (this process's count)
        self.trimmed: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"RedisClusterStore({self._where!r})"

    def _redis(self) -> RedisCluster:
        """The cluster client, made (and the slot map read) on first use."""
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> RedisCluster:
        ep, opts = self.endpoint, self._options
        try:
            client = RedisCluster(
                startup_nodes=[_node(h, p) for h, p in ep.hosts],
                username=ep.username,
                password=ep.password,
                ssl=ep.tls,
                socket_timeout=opts.request_timeout,
                socket_connect_timeout=opts.connect_timeout,
                # an outage must reach the caller fast (it spools); see redis_client.open_client
                retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
                decode_responses=False,
            )
        except RedisClusterException as exc:  # no startup node answered
            raise RedisConnectionError(f"no node of the cluster answers: {exc}") from exc
        return client

    # -- the rest ---

    def ping(self) -> None:
        """Every master answers (a cluster missing one cannot take all writes)."""
        with unavailable_on_outage(self._tier, self._where):
            client = self._redis()
            client.ping(target_nodes=RedisCluster.PRIMARIES)

    def warnings(self) -> list[str]:
        """Masters with fewer replicas than appends ask for (or none at all)."""
        with unavailable_on_outage(self._tier, self._where):
            nodes: Any = self._redis().cluster_nodes()
        replicas: dict[str, int] = {}
        for info in nodes.values():
            if "master" in info["flags"] and "fail" not in info["flags"] and info["slots"]:
                replicas.setdefault(info["node_id"], 0)
        for info in nodes.values():
            if "slave" in info["flags"] and info["connected"] and "fail" not in info["flags"]:
                master = info["master_id"]
                if master in replicas:
                    replicas[master] += 1
        wanted = max(1, self._replicas_wanted)
        short = sorted(
            addr
            for addr, info in nodes.items()
            if info["node_id"] in replicas and replicas[info["node_id"]] < wanted
        )
        if not short:
            return []
        return [
            f"{self._tier} backend {self._where}: master(s) {', '.join(short)} have fewer than "
            f"{wanted} replica(s): what they hold is lost with them"
            + (", and appends that ask for replicas are buffered" if self._replicas_wanted else "")
        ]

    def after_fork(self) -> None:
        """In a child process: a client of its own on first use (the parent's is set aside,
        never closed from here), and a fresh lock."""
        self._lock = threading.Lock()
        self._client = None

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _node(host: str, port: int) -> ClusterNode:
    make: Any = ClusterNode  # untyped in redis-py
    node: ClusterNode = make(host, port)
    return node


def from_url(url: str, options: Options, setting: str) -> RedisClusterStore:
    """The transitory tier's factory in ``persistio.tiers.registry.REGISTRY`` (``redis+cluster://``)."""
    return RedisClusterStore(url, options, setting)


def volatile_from_url(url: str, options: Options, setting: str) -> RedisClusterStore:
    """The volatile tier's factory in ``persistio.tiers.registry.REGISTRY`` (``redis+cluster://``)."""
    return RedisClusterStore(url, options, setting, tier="volatile")


__all__ = ["RedisClusterStore", "from_url", "volatile_from_url"]
