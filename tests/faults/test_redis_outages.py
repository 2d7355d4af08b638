"""Redis goes away under load (SIGKILL, or a clean stop then connection refused) and comes back.

The store's streams, volatile keys and deferred-task queue all live on a private redis-server
(see ``PrivateRedis`` for its durability settings), so only this test's server is broken.
While it is away: transitory writes and deferred tasks are buffered in the spool, volatile writes
are dropped and counted; nothing raises. Once it is back every acked write is in place once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from .checks import (
    Deliveries,
    assert_exactly_once,
    assert_only_outages,
    assert_volatile_landed,
    cassandra_rows,
    cassandra_session,
)
from .load import (
    Ledger,
    Load,
    Phases,
    SpoolWatch,
    StoreFactory,
    first_done_after,
    phase_metrics,
    spool_metrics,
)
from .metrics import Metrics
from .models import RedisKillEvent, RedisStopEvent
from .servers import PrivateRedis, port_answers

pytestmark = pytest.mark.slow

DEADLINE = 1.5
RATE = 60.0  # saves/s per saver thread; two threads


def _redis_outage(
    *,
    break_it: Callable[[PrivateRedis], None],
    model: Callable[[int, int], Any],
    prefix: str,
    server: PrivateRedis,
    make_store: StoreFactory,
    amorphous_url: str,
    cassandra_keyspace: str,
    data: Path,
    metrics: Metrics,
) -> None:
    events, now, docs = f"{prefix}_events", f"{prefix}_now", f"{prefix}_docs"
    # Given a store on a private Redis, with a consumer recording every delivery of the stream
    store = make_store(
        transitory=server.url(),
        volatile=server.url(),
        amorphous=amorphous_url,
        data_dir=data,
        realtime_deadline=DEADLINE,
    )
    deliveries = Deliveries()
    store.consumer(events, batch=256)(deliveries)
    ledger, phases = Ledger(), Phases()
    load = Load(store, ledger, phases, [lambda n: model(n, n % 8)] * 2, rate=RATE)
    load.warm_up()

    with SpoolWatch(data / "spool.db") as watch:
        phases.enter("normal")
        load.start()
        try:
            time.sleep(2.0)
            # When Redis goes away mid-load and saves go on for 4 s
            phases.enter("fault")
            break_it(server)
            assert not port_answers(server.port)
            time.sleep(4.0)
            # And it is started again on the same port and data dir while the load goes on (past
            # the circuit's cool-down, which grew to 4 s while every probe failed)
            server.start()
            restored = time.monotonic()
            phases.enter("recovery")
            time.sleep(5.0)
        finally:
            load.stop()
            phases.end()
        store.drain(timeout=30)

    # Then nothing raised, and the outage really buffered and dropped writes
    assert_only_outages(ledger)
    assert not ledger.errors()
    fault = ledger.in_phase("fault")
    assert any(e.has(events, ("buffered",)) for e in fault), "no transitory write was buffered"
    assert any(e.has(now, ("dropped",)) for e in fault), "no volatile write was dropped"
    assert any(e.has(docs, ("buffered",)) for e in fault), "no deferred task was buffered"
    closed_after = first_done_after(ledger, events, restored)
    assert closed_after is not None, "the circuit stayed open after Redis was back"
    status = store.status()
    assert status["spool"]["depth"] == 0
    # And every acked stream entry was delivered exactly once (the AOF kept the acked ones)
    assert_exactly_once(events, ledger.acked(events), deliveries.counts)
    # And every volatile value written before save returned is there; every drop is counted
    with redis.Redis.from_url(server.url()) as client:
        dropped = assert_volatile_landed(client, ledger, status, now)
    # And every deferred amorphous write (queued on Redis, or spooled) landed once in Cassandra
    with cassandra_session(amorphous_url) as session:
        rows = cassandra_rows(session, cassandra_keyspace, docs)
    assert_exactly_once(docs, ledger.acked(docs), rows)

    metrics.record(
        {
            **phase_metrics(ledger, phases),
            **spool_metrics(watch, phases, restored, "transitory"),
            "circuit_closed_after_s": closed_after,
            "saves": len(ledger.entries),
            "buffered_saves": len(ledger.acked(events, ("buffered",))),
            "dropped_volatile": dropped,
        }
    )


def test_redis_sigkill_loses_no_acknowledged_write(
    private_redis: PrivateRedis,
    make_store: StoreFactory,
    amorphous_url: str,
    cassandra_keyspace: str,
    tmp_path: Path,
    metrics: Metrics,
) -> None:
    _redis_outage(
        break_it=PrivateRedis.kill,
        model=RedisKillEvent,
        prefix="fault_rk",
        server=private_redis,
        make_store=make_store,
        amorphous_url=amorphous_url,
        cassandra_keyspace=cassandra_keyspace,
        data=tmp_path / "data",
        metrics=metrics,
    )


def test_redis_stopped_refuses_then_replays(
    private_redis: PrivateRedis,
    make_store: StoreFactory,
    amorphous_url: str,
    cassandra_keyspace: str,
    tmp_path: Path,
    metrics: Metrics,
) -> None:
    _redis_outage(
        break_it=PrivateRedis.stop,
        model=RedisStopEvent,
        prefix="fault_rs",
        server=private_redis,
        make_store=make_store,
        amorphous_url=amorphous_url,
        cassandra_keyspace=cassandra_keyspace,
        data=tmp_path / "data",
        metrics=metrics,
    )
