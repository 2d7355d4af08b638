"""The store and model that ``benchmarks.worker_scaling`` enqueues and its workers run.

A module of its own, so the model has one import name in the enqueuing process and in every
``persistio worker benchmarks.scaling_app:store`` process (tasks name their model by module).
"""

from __future__ import annotations

import os
import uuid

import msgspec

import persistio as pio

REDIS_DB = 13  # a database of its own, flushed per run


@pio.persist(
    pio.Acid("ws_rows", key=("id",), priority=pio.HIGH),
    pio.Amorphous("ws_docs", partition=("bucket",), order=("id",), priority=pio.NORMAL),
)
class ScalingTask(msgspec.Struct, frozen=True):
    id: uuid.UUID
    bucket: int


def store_from_env() -> pio.Persistio:
    redis_url = os.environ["PERSISTIO_TRANSITORY_URL"].rsplit("/", 1)[0] + f"/{REDIS_DB}"
    return pio.Persistio.from_env(
        transitory=redis_url, volatile=redis_url, data_dir=os.environ.get("WS_DATA", ".persistio")
    )


def __getattr__(name: str) -> pio.Persistio:
    # `persistio worker benchmarks.scaling_app:store` builds the store in the worker process
    if name == "store":
        return store_from_env()
    raise AttributeError(name)
