"""Arm ``persistio``: the same writes through the library, with its defaults.

Load processes call ``save`` (batch 1) or ``save_many``; the threads of one process share one
store, as a web application's request threads would. Worker processes run ``run_worker`` with
the workload's notify consumer. Each store has its own spool in a temporary data directory.
Only the public API is used.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import persistio as pio

from ..settings import REDIS_DB_PIO, Endpoints
from ..workload import (
    ACTIVITY,
    ALL_ACID,
    CHECKINS,
    HERE,
    NOTIFY,
    RAW,
    S_ACTIVITY,
    S_AWARDS,
    S_CELL,
    S_HERE,
    S_NOTIFY,
    S_POINTS,
    S_RAW,
)
from . import Check

if TYPE_CHECKING:
    from ..admin import Admin

ARM_DB = "pio"
NOTIFY_INTENT = {ALL_ACID: NOTIFY, "seed": S_NOTIFY}
TASK_STREAMS = [f"pio:{{tasks.{p}}}" for p in ("high", "normal", "low")]
PG_TABLES = {ALL_ACID: (CHECKINS,), "seed": (S_AWARDS, S_POINTS)}
CASSANDRA_TABLES = {ALL_ACID: (ACTIVITY, RAW), "seed": (S_ACTIVITY, S_RAW)}


def _streams(workload: str) -> list[str]:
    return [*TASK_STREAMS, f"pio:{{{NOTIFY_INTENT[workload]}}}"]


class Degraded(Exception):
    """A save was buffered or dropped: a backend missed the deadline. The run is not valid."""


def open_store(endpoints: Endpoints, tag: str) -> tuple[pio.Persistio, str]:
    data_dir = tempfile.mkdtemp(prefix=f"persistio-bench-{tag}-")
    redis_url = endpoints.redis_url(REDIS_DB_PIO)
    store = pio.Persistio(
        transitory=redis_url,
        volatile=redis_url,
        acid=endpoints.pg_sqlalchemy_url(endpoints.database(ARM_DB)),
        amorphous=endpoints.cassandra_url(),
        data_dir=data_dir,
    )
    return store, data_dir


class PioClient:
    thread_safe = True

    def __init__(self, endpoints: Endpoints, tag: str) -> None:
        self.store, self._dir = open_store(endpoints, tag)
        self.outage = False

    def configure(self, durability: str, outage: bool) -> None:
        """Redis's fsync policy is server-wide, and acid commits synchronously: nothing to set
        for durability."""
        self.outage = outage

    def save(self, batch: Sequence[Any]) -> int:
        receipts = [self.store.save(batch[0])] if len(batch) == 1 else self.store.save_many(batch)
        degraded = 0
        for r in receipts:
            if r.buffered or r.dropped:
                if not self.outage:
                    raise Degraded(f"save {r.write_id}: buffered {r.buffered}, dropped {r.dropped}")
                degraded += 1
        return degraded

    def close(self) -> None:
        self.store.close()
        shutil.rmtree(self._dir, ignore_errors=True)


class PioWorker:
    def __init__(self, endpoints: Endpoints, workload: str, tag: str) -> None:
        self.store, self._dir = open_store(endpoints, f"{tag}-{workload}")
        self._delivered: list[bytes] = []
        self.store.consumer(NOTIFY_INTENT[workload])(self._deliver)

    def _deliver(self, c: Any) -> None:
        self._delivered.append(c.id.bytes)

    def run(self, stop: threading.Event, delivered: list[bytes]) -> None:
        self._delivered = delivered
        finished = threading.Event()

        def stopper() -> None:
            stop.wait()
            # run_worker() clears its stop flag when it starts: ask until it has returned
            while not finished.wait(0.01):
                self.store.stop_worker()

        thread = threading.Thread(target=stopper, name="bench-stopper", daemon=True)
        thread.start()
        try:
            self.store.run_worker()
        finally:
            finished.set()
            thread.join()

    def backlog(self) -> int:
        return int(self.store.status()["spool"]["depth"])

    def close(self) -> None:
        self.store.close()
        shutil.rmtree(self._dir, ignore_errors=True)


class PioStores:
    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        self.database = admin.endpoints.database(ARM_DB)

    def prepare(self) -> None:
        store, data_dir = open_store(self.admin.endpoints, "setup")
        try:
            store.setup()  # the library creates its own tables, keyspace tables and groups
        finally:
            store.close()
            shutil.rmtree(data_dir, ignore_errors=True)

    def reset(self, workload: str) -> None:
        tables = ", ".join((*PG_TABLES[workload], "_persistio_outbox"))
        self.admin.pg(self.database).execute(f"TRUNCATE {tables}")
        self.admin.redis[REDIS_DB_PIO].flushdb()  # persistio recreates streams and groups
        for table in CASSANDRA_TABLES[workload]:
            self.admin.truncate(table)

    def pending(self, workload: str) -> int:
        return self.admin.xlen(REDIS_DB_PIO, *_streams(workload))

    def check(self, workload: str) -> Check:
        a = self.admin
        check = Check()
        volatile = {"here": HERE} if workload == ALL_ACID else {"here": S_HERE, "cells": S_CELL}
        for logical, intent in volatile.items():
            pattern = f"pio:v:{intent}:*"
            check.add(logical, f"redis:{pattern}", a.scan_count(REDIS_DB_PIO, pattern))
        logical_pg = (
            {"checkins": CHECKINS}
            if workload == ALL_ACID
            else {"awards": S_AWARDS, "points": S_POINTS}
        )
        for logical, table in logical_pg.items():
            check.add(logical, f"postgres:{table}", a.pg_count(self.database, table))
        activity, raw = CASSANDRA_TABLES[workload]
        check.add("activity", f"cassandra:{activity}", a.cql_count(activity))
        check.add("raw", f"cassandra:{raw}", a.cql_count(raw))
        streams = _streams(workload)
        check.leftovers["streams"] = self.pending(workload)
        check.leftovers["dead_letters"] = a.xlen(REDIS_DB_PIO, *(f"{s}:dead" for s in streams))
        check.leftovers["outbox"] = a.pg_count(self.database, "_persistio_outbox")
        return check
