"""A store for the metrics and tracing tests: run as
`persistio worker tests.integration.metrics_app:store --metrics-port PORT`.

Each save writes a volatile value now and queues an acid row (HIGH) and an amorphous document
(NORMAL) for the workers, so a scrape sees saves, deferred writes and their lag.
"""

from __future__ import annotations

import os
from datetime import timedelta

import msgspec

import persistio as pio


@pio.persist(
    pio.Volatile("metered_now", key=("n",), ttl=timedelta(minutes=10)),
    pio.Acid("metered_rows", key=("n",), priority=pio.HIGH),
    pio.Amorphous("metered_docs", partition=("run",), order=("n",), priority=pio.NORMAL),
)
class Metered(msgspec.Struct, frozen=True):
    n: int
    run: str


def make_store() -> pio.Persistio:
    return pio.Persistio.from_env(data_dir=os.environ.get("PERSISTIO_DATA_DIR", ".persistio"))
