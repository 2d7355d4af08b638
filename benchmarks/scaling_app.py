"""The store and model that ``benchmarks.worker_scaling`` enqueues and its workers run.

A module of its own, so the model has one import name in the enqueuing process and in every
``persistio worker benchmarks.scaling_app:store`` process (tasks name their model by module).
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit

import msgspec
import redis

import persistio as pio

REDIS_DB = 13  # a database of its own, flushed per run


@pio.persist(
    pio.Acid("ws_rows", key=("id",), priority=pio.HIGH),
    pio.Amorphous("ws_docs", partition=("bucket",), order=("id",), priority=pio.NORMAL),
)
class ScalingTask(msgspec.Struct, frozen=True):
    id: uuid.UUID
    bucket: int


def redis_url() -> str:
    """The transitory URL on a database of its own (a cluster has only 0: as it is)."""
    url = os.environ["PERSISTIO_TRANSITORY_URL"]
    if urlsplit(url).scheme.endswith("+cluster"):
        return url
    return url.rsplit("/", 1)[0] + f"/{REDIS_DB}"


def flush_redis(url: str) -> None:
    """Empty the run's Redis database (every master of a cluster)."""
    if urlsplit(url).scheme.endswith("+cluster"):
        from redis.cluster import RedisCluster

        cluster = RedisCluster.from_url(url.replace("+cluster", "", 1).split(",")[0])
        cluster.flushall(target_nodes=RedisCluster.PRIMARIES)
        cluster.close()
        return
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


def store_from_env() -> pio.Persistio:
    url = redis_url()
    return pio.Persistio.from_env(
        transitory=url,
        volatile=url,
        data_dir=os.environ.get("WS_DATA", ".persistio"),
        task_queues=pio.TaskQueues(partitions=3),
    )


def __getattr__(name: str) -> pio.Persistio:
    # `persistio worker benchmarks.scaling_app:store` builds the store in the worker process
    if name == "store":
        return store_from_env()
    raise AttributeError(name)
