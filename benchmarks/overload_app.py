"""The store and models that ``benchmarks.overload`` saves and its worker process runs.

A module of its own, so the models have one import name in the saving process and in the
``persistio worker benchmarks.overload_app:store`` process. One raw intent per ``on_lag``
policy (all LOW, all promising 2 s), and an urgent HIGH intent saved beside them.
"""

from __future__ import annotations

import os
from datetime import timedelta

import msgspec

import persistio as pio

WITHIN = timedelta(seconds=2)
REDIS_DB = 14  # a database of its own, flushed per run


@pio.persist(pio.Amorphous("ovl_accept", partition=("id",), priority=pio.LOW, within=WITHIN))
class AcceptRaw(msgspec.Struct, frozen=True):
    id: str


@pio.persist(
    pio.Amorphous("ovl_slow", partition=("id",), priority=pio.LOW, within=WITHIN, on_lag="slow")
)
class SlowRaw(msgspec.Struct, frozen=True):
    id: str


@pio.persist(
    pio.Amorphous("ovl_shed", partition=("id",), priority=pio.LOW, within=WITHIN, on_lag="shed")
)
class ShedRaw(msgspec.Struct, frozen=True):
    id: str


@pio.persist(
    pio.Acid("ovl_urgent", key=("id",), priority=pio.HIGH, within=timedelta(milliseconds=500))
)
class Urgent(msgspec.Struct, frozen=True):
    id: str


MODELS: dict[str, type] = {"accept": AcceptRaw, "slow": SlowRaw, "shed": ShedRaw}


def store_from_env() -> pio.Persistio:
    """Embedded when no PERSISTIO_*_URL is set; the run's data dir and namespace from env."""
    options: dict[str, object] = {
        "data_dir": os.environ.get("OVL_DATA", ".persistio"),
        "namespace": os.environ.get("OVL_NAMESPACE", ""),
        # a slowed save may wait as long as the promise: two producers then admit at most 200
        # objects a second between them, below what one worker serves
        "task_queues": pio.TaskQueues(slow_wait=WITHIN.total_seconds()),
    }
    url = os.environ.get("PERSISTIO_TRANSITORY_URL")
    if url is None:
        return pio.Persistio(**options)  # type: ignore[arg-type]
    db_url = url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    return pio.Persistio.from_env(transitory=db_url, volatile=db_url, **options)


def __getattr__(name: str) -> pio.Persistio:
    # `persistio worker benchmarks.overload_app:store` builds the store in the worker process
    if name == "store":
        return store_from_env()
    raise AttributeError(name)
