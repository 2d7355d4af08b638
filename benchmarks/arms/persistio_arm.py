"""Arm ``persistio``: the same writes through the library, with its defaults.

Load processes call ``save`` (batch 1) or ``save_many``; worker processes run ``run_worker`` with
a ``bm_notify`` consumer. Each process has its own spool in a temporary data directory.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import persistio as pio

from ..settings import REDIS_DB_PIO, Endpoints
from ..workload import ACTIVITY, CHECKINS, HERE, NOTIFY, RAW, BmCheckin
from . import Check

if TYPE_CHECKING:
    from ..admin import Admin

ARM_DB = "pio"
STREAMS = [f"pio:{{{name}}}" for name in ("tasks.high", "tasks.normal", "tasks.low", NOTIFY)]


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
    def __init__(self, endpoints: Endpoints, tag: str) -> None:
        self.store, self._dir = open_store(endpoints, tag)

    def set_durability(self, durability: str) -> None:
        """Nothing to do: Redis's fsync policy is server-wide, and acid commits synchronously."""

    def save(self, batch: Sequence[BmCheckin]) -> None:
        receipts = [self.store.save(batch[0])] if len(batch) == 1 else self.store.save_many(batch)
        for r in receipts:
            if r.buffered or r.dropped:
                raise Degraded(f"save {r.write_id}: buffered {r.buffered}, dropped {r.dropped}")

    def close(self) -> None:
        self.store.close()
        shutil.rmtree(self._dir, ignore_errors=True)


class PioWorker:
    def __init__(self, endpoints: Endpoints, tag: str) -> None:
        self.store, self._dir = open_store(endpoints, tag)
        self._delivered: list[bytes] = []
        self.store.consumer(NOTIFY)(self._deliver)

    def _deliver(self, c: BmCheckin) -> None:
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

    def reset(self) -> None:
        self.admin.pg(self.database).execute(f"TRUNCATE {CHECKINS}, _persistio_outbox")
        self.admin.redis[REDIS_DB_PIO].flushdb()  # persistio recreates streams and groups
        for table in (ACTIVITY, RAW):
            self.admin.truncate(table)

    def pending(self) -> int:
        return self.admin.xlen(REDIS_DB_PIO, *STREAMS)

    def check(self) -> Check:
        a = self.admin
        rows = {
            f"postgres:{CHECKINS}": a.pg_count(self.database, CHECKINS),
            "redis:here": a.scan_count(REDIS_DB_PIO, f"pio:v:{HERE}:*"),
            f"cassandra:{ACTIVITY}": a.cql_count(ACTIVITY),
            f"cassandra:{RAW}": a.cql_count(RAW),
        }
        leftovers = {
            "streams": self.pending(),
            "dead_letters": a.xlen(REDIS_DB_PIO, *(f"{s}:dead" for s in STREAMS)),
            "outbox": a.pg_count(self.database, "_persistio_outbox"),
        }
        return Check(rows, leftovers)
