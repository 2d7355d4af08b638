"""The cluster fault tests' models, every intent named ``cf_*`` (intent names are global).

Each object carries ``n``, unique within its test, so a ledger entry can be found by raw clients
in every store: a stream delivery, ``pio:v:cf_now:{<n>}``, a Cassandra row.
"""

from __future__ import annotations

from datetime import timedelta

import msgspec

import persistio as pio

TTL = timedelta(minutes=10)  # volatile values outlive the test: a missing one was lost


# A Redis master SIGKILLed under load: streams with and without WAIT, a volatile value, and a
# deferred Cassandra row whose task waits on the (replicated) task queue
@pio.persist(
    pio.Transitory("cf_events", partitions=3),
    pio.Transitory("cf_safe", partitions=3, replicas=1),
    pio.Volatile("cf_now", key=("n",), ttl=TTL),
    pio.Amorphous("cf_docs", partition=("bucket",), order=("n",)),
)
class FailoverEvent(msgspec.Struct, frozen=True):
    n: int
    bucket: int


# A master that dies while its replica lags: one stream acknowledged by the master alone, one
# by a replica too (two stores, so one's buffering never holds the other's writes back)
@pio.persist(pio.Transitory("cf_lag_plain", partitions=3))
class LagPlain(msgspec.Struct, frozen=True):
    n: int


@pio.persist(pio.Transitory("cf_lag_safe", partitions=3, replicas=1))
class LagSafe(msgspec.Struct, frozen=True):
    n: int


# A Cassandra node SIGKILLed and brought back: a REALTIME row (buffers if it must) and a
# deferred one
@pio.persist(
    pio.Amorphous("cf_cs_hot", partition=("bucket",), order=("n",), priority=pio.REALTIME),
    pio.Amorphous("cf_cs_cold", partition=("bucket",), order=("n",)),
)
class NodeReading(msgspec.Struct, frozen=True):
    n: int
    bucket: int
