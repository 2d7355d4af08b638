"""Cassandra frozen (SIGSTOP of its JVM) for 15 s under load.

The model's "hot" amorphous intent is REALTIME, so its saves meet the frozen node: they must
buffer into the spool within about ``realtime_deadline`` (the driver's own request timeout is
10 s). Its "cold" one is deferred (NORMAL): queued on Redis, written by ``drain()``. After
SIGCONT everything lands, once.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .checks import (
    Deliveries,
    assert_exactly_once,
    assert_only_outages,
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
from .models import CsReading
from .servers import PrivateRedis, cassandra_process, frozen

pytestmark = pytest.mark.slow

DEADLINE = 1.5
FREEZE = 15.0
SLACK = 1.0  # scheduling on a 2-core machine running three servers


def test_cassandra_sigstop_buffers_realtime_writes_and_converges(
    private_redis: PrivateRedis,
    amorphous_url: str,
    cassandra_keyspace: str,
    make_store: StoreFactory,
    tmp_path: Path,
    metrics: Metrics,
) -> None:
    redis_url = private_redis.url()
    data = tmp_path / "data"
    # Given a store whose amorphous intents are one REALTIME and one deferred
    store = make_store(
        transitory=redis_url,
        volatile=redis_url,
        amorphous=amorphous_url,
        data_dir=data,
        realtime_deadline=DEADLINE,
    )
    events = Deliveries()
    store.consumer("fault_cs_events", batch=256)(events)
    ledger, phases = Ledger(), Phases()
    load = Load(store, ledger, phases, [lambda n: CsReading(n, n % 16)] * 2, rate=50.0)
    load.warm_up()
    port = int(amorphous_url.split("://", 1)[1].split("/", 1)[0].rpartition(":")[2])
    node = cassandra_process(port)

    with SpoolWatch(data / "spool.db") as watch:
        phases.enter("normal")
        load.start()
        try:
            time.sleep(3.0)
            # When the Cassandra JVM is stopped for 15 s mid-load
            with frozen(node, watchdog=FREEZE + 20):
                phases.enter("fault")
                time.sleep(FREEZE)
            # And continued (SIGCONT, also on any failure above), while the load goes on
            restored = time.monotonic()
            phases.enter("recovery")
            time.sleep(3.0)
        finally:
            load.stop()
            phases.end()
        store.drain(timeout=60)
        converged = time.monotonic() - restored

    # Then nothing raised, and no save waited much longer than the deadline
    assert_only_outages(ledger)
    assert not ledger.errors()
    assert ledger.max_latency() < DEADLINE + SLACK, f"a save took {ledger.max_latency():.2f}s"
    assert any(e.has("fault_cs_hot", ("buffered",)) for e in ledger.in_phase("fault"))
    assert store.status()["spool"]["depth"] == 0
    # And every acked write landed exactly once: both tables, and the stream's deliveries
    with cassandra_session(amorphous_url) as session:
        hot = cassandra_rows(session, cassandra_keyspace, "fault_cs_hot")
        cold = cassandra_rows(session, cassandra_keyspace, "fault_cs_cold")
    assert_exactly_once("fault_cs_hot", ledger.acked("fault_cs_hot"), hot)
    assert_exactly_once("fault_cs_cold", ledger.acked("fault_cs_cold"), cold)
    assert_exactly_once("fault_cs_events", ledger.acked("fault_cs_events"), events.counts)

    metrics.record(
        {
            **phase_metrics(ledger, phases),
            **spool_metrics(watch, phases, restored, "amorphous"),
            "circuit_closed_after_s": first_done_after(ledger, "fault_cs_hot", restored),
            "saves": len(ledger.entries),
            "buffered_saves": len(ledger.acked("fault_cs_hot", ("buffered",))),
            "converged_after_s": round(converged, 2),
        }
    )
