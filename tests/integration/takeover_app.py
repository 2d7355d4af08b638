"""A store for the worker takeover test: `persistio worker tests.integration.takeover_app:store`.

Its consumer is slow (20 ms an item) and records who handled each item and when, in a Redis list
(``n:pid:time``), so a test can SIGKILL a worker in the middle of a batch and see which items
were handled twice, by whom, and after how long. Its task queues hand a task taken by a dead
worker to another one after 3 s.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

import msgspec

import persistio as pio
from tests import redis_clients

EFFECTS_KEY = "test:takeover"
VISIBILITY = 3.0


@pio.persist(
    pio.Transitory(
        "chores",
        partitions=3,
        visibility=timedelta(seconds=VISIBILITY),
        max_deliveries=5,
    ),
    pio.Acid("chore_rows", key=("n",), priority=pio.HIGH),
)
class Chore(msgspec.Struct, frozen=True):
    n: int
    run: str


store = pio.Persistio.from_env(
    data_dir=os.environ.get("PERSISTIO_DATA_DIR", ".persistio"),
    task_queues=pio.TaskQueues(partitions=2, visibility=VISIBILITY),
)
effects = redis_clients.client(os.environ["PERSISTIO_VOLATILE_URL"])


@store.consumer("chores", batch=50)
def handle(chore: Chore) -> None:
    effects.rpush(f"{EFFECTS_KEY}:{chore.run}", f"{chore.n}:{os.getpid()}:{time.time()}")
    time.sleep(0.02)
