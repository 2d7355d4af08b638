"""The fault tests' models: one per scenario, every intent named ``fault_*``.

Intent names are global per tier, so they are declared here once. Each object carries ``n``, a
number unique within its test, so a ledger entry can be found in every store by raw clients:
the Redis stream delivery, ``pio:v:<intent>:{<n>}``, the acid row and the Cassandra row.
"""

from __future__ import annotations

from datetime import timedelta

import msgspec

import persistio as pio

TTL = timedelta(minutes=10)  # volatile values outlive the test: a missing one was lost


# 1. Redis SIGKILL, and 4. Redis stopped: streams, keys and the deferred-task queue live there.
@pio.persist(
    pio.Transitory("fault_rk_events"),  # REALTIME, buffers on an outage
    pio.Volatile("fault_rk_now", key=("n",), ttl=TTL),  # REALTIME, dropped (and counted)
    pio.Amorphous("fault_rk_docs", partition=("bucket",), order=("n",)),  # NORMAL: queued
)
class RedisKillEvent(msgspec.Struct, frozen=True):
    n: int
    bucket: int


@pio.persist(
    pio.Transitory("fault_rs_events"),
    pio.Volatile("fault_rs_now", key=("n",), ttl=TTL),
    pio.Amorphous("fault_rs_docs", partition=("bucket",), order=("n",)),
)
class RedisStopEvent(msgspec.Struct, frozen=True):
    n: int
    bucket: int


# 2. PostgreSQL frozen: an order must commit before save returns (on_outage="fail") ...
@pio.persist(
    pio.Acid("fault_pg_orders", key=("n",)),
    pio.Transitory("fault_pg_order_events"),
    pio.Volatile("fault_pg_order_now", key=("n",), ttl=TTL),
)
class PgOrder(msgspec.Struct, frozen=True):
    n: int
    amount: int


# ... while clicks never wait for PostgreSQL: their acid row is deferred (HIGH, retried)
@pio.persist(
    pio.Transitory("fault_pg_clicks"),
    pio.Volatile("fault_pg_click_now", key=("n",), ttl=TTL),
    pio.Acid("fault_pg_click_log", key=("n",), priority=pio.HIGH),
)
class PgClick(msgspec.Struct, frozen=True):
    n: int
    page: str


# 3. Cassandra frozen: one amorphous intent REALTIME (buffers into the spool), one deferred
@pio.persist(
    pio.Amorphous("fault_cs_hot", partition=("bucket",), order=("n",), priority=pio.REALTIME),
    pio.Amorphous("fault_cs_cold", partition=("bucket",), order=("n",)),
    pio.Transitory("fault_cs_events"),
)
class CsReading(msgspec.Struct, frozen=True):
    n: int
    bucket: int


# 5. The application SIGKILLed: saved by a child process, replayed by the test process
@pio.persist(
    pio.Amorphous("fault_crash_hot", partition=("bucket",), order=("n",), priority=pio.REALTIME),
    pio.Amorphous("fault_crash_cold", partition=("bucket",), order=("n",)),
    pio.Transitory("fault_crash_events"),
)
class CrashDoc(msgspec.Struct, frozen=True):
    n: int
    bucket: int


# Bug report: a hung acid backend and the shared REALTIME thread pool
@pio.persist(pio.Acid("fault_starve_orders", key=("n",)))
class StarveOrder(msgspec.Struct, frozen=True):
    n: int


@pio.persist(
    pio.Transitory("fault_starve_clicks"),
    pio.Volatile("fault_starve_click_now", key=("n",), ttl=TTL),
)
class StarveClick(msgspec.Struct, frozen=True):
    n: int


# Bug report: the first save of a model whose only REALTIME intent is on a healthy Redis
@pio.persist(
    pio.Transitory("fault_setup_events"),
    pio.Acid("fault_setup_log", key=("n",), priority=pio.LOW),
)
class SetupEvent(msgspec.Struct, frozen=True):
    n: int


# Bug report: the store's breaker options (a stopped Redis, nothing else)
@pio.persist(pio.Transitory("fault_breaker_events"))
class BreakerProbe(msgspec.Struct, frozen=True):
    n: int
