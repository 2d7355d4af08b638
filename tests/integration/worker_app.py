"""A store for worker-process tests: run as `persistio worker tests.integration.worker_app:store`.

Its consumer records every delivery in a Redis list (RPUSH is not idempotent), so a test can count
how many times each effect really happened. Its stream and the task queues are partitioned, so
the workers share several partitions of each (spread over the masters of a Redis Cluster).
"""

from __future__ import annotations

import os

import msgspec

import persistio as pio
from tests import redis_clients

EFFECTS_KEY = "test:effects"


@pio.persist(
    pio.Acid("fanout_rows", key=("n",), priority=pio.HIGH),
    pio.Amorphous("fanout_docs", partition=("bucket",), order=("n",), priority=pio.NORMAL),
    pio.Transitory("fanout_events", priority=pio.LOW, partitions=4, order_by=("bucket",)),
)
class Fanout(msgspec.Struct, frozen=True):
    n: int
    bucket: int
    run: str


store = pio.Persistio.from_env(
    data_dir=os.environ.get("PERSISTIO_DATA_DIR", ".persistio"),
    task_queues=pio.TaskQueues(partitions=3),
)
effects = redis_clients.client(os.environ["PERSISTIO_VOLATILE_URL"])


@store.consumer("fanout_events", batch=200)
def record(item: Fanout) -> None:
    effects.rpush(f"{EFFECTS_KEY}:{item.run}", item.n)
