"""A Cassandra node SIGKILLed under load, then brought back on its data.

The keyspace is replicated on all three nodes and writes go at LOCAL_QUORUM (the default from
replication 3), so two nodes acknowledge every write while the third is down: saves go on. The
other nodes keep hints for the dead one; once it is back it takes them (the hint files on the
others empty out), and every acknowledged row is read back once, at consistency ALL.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from cassandra import ConsistencyLevel
from cassandra.query import SimpleStatement

from tests import redis_clients
from tests.conftest import cassandra_session
from tests.faults.checks import assert_exactly_once
from tests.faults.load import Ledger, Load, Phases, StoreFactory, phase_metrics
from tests.faults.metrics import Metrics

from .models import NodeReading
from .nodes import CLUSTER_DIR, cassandra_pid, kill_cassandra, restart_missing_nodes

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

DEADLINE = 1.5
RATE = 50.0
VICTIM = 3  # node3, 127.0.0.4: not the seed the others started from


def hint_files() -> list[Path]:
    """Hints the other nodes hold for a node that was down (files, until delivered)."""
    return [
        f
        for i in range(1, VICTIM)
        for f in (CLUSTER_DIR / "cassandra" / f"node{i}" / "data" / "hints").glob("*.hints")
    ]


def rows_at_all(url: str, keyspace: str, table: str) -> Counter[int]:
    """``n`` of every row, read at consistency ALL (every replica answers)."""
    with cassandra_session(url) as session:
        query = SimpleStatement(
            f'SELECT n FROM "{keyspace}"."{table}"', consistency_level=ConsistencyLevel.ALL
        )
        return Counter(int(r.n) for r in session.execute(query, timeout=60))


def test_a_killed_node_is_not_felt_and_catches_up_when_back(
    cluster_redis_url: str,
    amorphous_url: str,
    cassandra_keyspace: str,
    make_store: StoreFactory,
    metrics: Metrics,
) -> None:
    redis_clients.flush(cluster_redis_url)
    # Given a store whose amorphous intents (one REALTIME, one deferred) are on the 3 nodes
    store = make_store(
        transitory=cluster_redis_url,
        volatile=cluster_redis_url,
        amorphous=amorphous_url,
        realtime_deadline=DEADLINE,
    )
    ledger, phases = Ledger(), Phases()
    makers = [lambda n: NodeReading(n, n % 16)] * 2
    load = Load(store, ledger, phases, makers, rate=RATE, limit=300.0)
    load.warm_up()
    cassandra_pid(VICTIM)  # ours, and running

    phases.enter("normal")
    load.start()
    try:
        time.sleep(3.0)
        # When one node is SIGKILLed mid-load, for 8 s
        phases.enter("fault")
        kill_cassandra(VICTIM)
        time.sleep(8.0)
        # And then started again on its own data, the load going on meanwhile
        phases.enter("restart")
        restart_s = restart_missing_nodes()
        back = time.monotonic()
        phases.enter("recovery")
        time.sleep(3.0)
    finally:
        load.stop()
        phases.end()
    store.drain(timeout=120)
    drained_s = time.monotonic() - back

    # Then nothing raised, and nothing was left in the spool
    assert not ledger.errors(), ledger.errors()[:3]
    assert store.status()["spool"]["depth"] == 0
    # And the others delivered their hints to it (their hint files empty out)
    deadline = time.monotonic() + 120
    while hint_files():
        assert time.monotonic() < deadline, f"hints still held: {hint_files()}"
        time.sleep(1.0)
    hints_s = time.monotonic() - back
    # And every acknowledged row reads back once, with every replica answering
    for intent in ("cf_cs_hot", "cf_cs_cold"):
        found = rows_at_all(amorphous_url, cassandra_keyspace, intent)
        assert_exactly_once(intent, ledger.acked(intent), found)

    fault = ledger.in_phase("fault")
    metrics.record(
        {
            **phase_metrics(ledger, phases),
            "node_restart_s": round(restart_s, 1),
            "hints_delivered_after_s": round(hints_s, 1),
            "drained_after_s": round(drained_s, 1),
            "saves": len(ledger.entries),
            "fault_saves_buffered": sum(1 for e in fault if e.has("cf_cs_hot", ("buffered",))),
            "lost": {"cf_cs_hot": 0, "cf_cs_cold": 0},
            "duplicated": {"cf_cs_hot": 0, "cf_cs_cold": 0},
        }
    )
