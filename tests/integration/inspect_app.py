"""A store for `persistio inspect`: its module declares the model the Redis keys were written by."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta

import msgspec

import persistio as pio


@pio.persist(
    pio.Volatile("peek_now", key=("venue", "user"), ttl=timedelta(minutes=10)),
    pio.Transitory("peek_events"),
    pio.Amorphous("peek_docs", partition=("venue",), order=("at", "id")),  # NORMAL: a queued task
)
class Visit(msgspec.Struct, frozen=True):
    id: uuid.UUID
    venue: int
    user: int
    at: datetime
    note: str


def make_store() -> pio.Persistio:
    return pio.Persistio(
        transitory=os.environ["PERSISTIO_TRANSITORY_URL"],
        volatile=os.environ["PERSISTIO_VOLATILE_URL"],
        data_dir=os.environ["PERSISTIO_DATA_DIR"],
    )


def make_namespaced_store() -> pio.Persistio:
    """The same model in a store of its own namespace: its keys are ``pio:v:peek__peek_now:...``."""
    return pio.Persistio(
        transitory=os.environ["PERSISTIO_TRANSITORY_URL"],
        volatile=os.environ["PERSISTIO_VOLATILE_URL"],
        data_dir=os.environ["PERSISTIO_DATA_DIR"],
        namespace="peek",
        models=[Visit],
    )
