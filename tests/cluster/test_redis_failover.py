"""A Redis Cluster master SIGKILLed under load: its replica is promoted and the client follows.

While the master's slots have no master (about cluster-node-timeout, 3 s here, plus the
election), saves that touch them buffer their transitory writes and deferred tasks in the spool
and drop (and count) their volatile ones; nothing raises. Once the replica is promoted the
client reads the new slot map and the spool replays there. The killed node is started again and
rejoins as a replica.

What a master acknowledged but had not passed to its replica when it died is gone with it (Redis
replication is asynchronous). An intent with ``replicas=1`` is acknowledged only once a replica
holds the entry (``WAIT``), so it loses nothing; the second test cuts the replica off on purpose
(SIGSTOP, and the master drops the replication link) to show the difference, and measures what
the other intent loses: what the master acknowledged while its replica was cut off.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import persistio as pio
from persistio.model.partitions import partition_names, pick, slot
from tests import redis_clients
from tests.conftest import cassandra_session
from tests.faults.checks import (
    Deliveries,
    assert_drops_counted,
    assert_exactly_once,
    cassandra_rows,
    volatile_present,
)
from tests.faults.load import Ledger, Load, Phases, StoreFactory, phase_metrics
from tests.faults.metrics import Metrics
from tests.faults.servers import frozen

from .models import FailoverEvent, LagPlain, LagSafe
from .nodes import (
    RedisNode,
    kill_redis,
    master_of,
    node_client,
    redis_pid,
    replica_of,
    restart_missing_nodes,
    wait_cluster_ok,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

DEADLINE = 1.5
RATE = 50.0  # saves/s per saver thread
# a circuit that probes often: what the figures show is the cluster's failover, not the backoff
BREAKER = pio.BreakerPolicy(threshold=3, reset=0.2, max_reset=1.0)


def wait_promoted(url: str, old: RedisNode, timeout: float = 60.0) -> tuple[RedisNode, float]:
    """The node that serves ``old``'s slots once another one does, and how long that took."""
    t0 = time.monotonic()
    first = old.slots[0][0]
    while True:
        try:
            now = master_of(url, first)
            if now.node_id != old.node_id:
                return now, time.monotonic() - t0
        except StopIteration:  # no master listed for the slot at this instant
            pass
        assert time.monotonic() - t0 < timeout, f"no replica of {old.name} was promoted"
        time.sleep(0.1)


def acked_between(ledger: Ledger, intent: str, start: float, stop: float) -> set[int]:
    """Objects whose save wrote ``intent`` at once and returned between two instants."""
    return {
        e.n
        for e in ledger.entries
        if e.has(intent, ("done",)) and start <= e.started + e.latency <= stop
    }


def first_done_on_victim(ledger: Ledger, intent: str, since: float) -> float | None:
    """Seconds from ``since`` until a save wrote ``intent`` at once into partition 0 (the one on
    the killed master's slots: partitions pick by write id without order_by)."""
    times = [
        e.started + e.latency - since
        for e in ledger.entries
        if e.started >= since
        and e.has(intent, ("done",))
        and e.receipt is not None
        and pick(e.receipt.write_id, 3) == 0
    ]
    return round(min(times), 2) if times else None


def volatile_lost(url: str, ledger: Ledger, intent: str) -> set[int]:
    """Values written before their save returned that Redis does not hold."""
    client = redis_clients.client(url)
    try:
        present = volatile_present(client, intent, (e.n for e in ledger.entries))
    finally:
        client.close()
    return ledger.acked(intent, ("done",)) - present


def lost_and_duplicated(acked: set[int], found: Any) -> tuple[set[int], dict[int, int]]:
    return acked - set(found), {n: c for n, c in found.items() if c > 1}


def test_a_killed_master_loses_nothing_acknowledged_and_the_client_follows(
    cluster_redis_url: str,
    amorphous_url: str,
    cassandra_keyspace: str,
    make_store: StoreFactory,
    metrics: Metrics,
) -> None:
    url = cluster_redis_url
    redis_clients.flush(url)
    # Given a store on the cluster whose task queues, like cf_safe, wait for a replica
    store = make_store(
        transitory=url,
        volatile=url,
        amorphous=amorphous_url,
        realtime_deadline=DEADLINE,
        breaker=BREAKER,
        task_queues=pio.TaskQueues(partitions=3, replicas=1),
    )
    events, safe = Deliveries(), Deliveries()
    store.consumer("cf_events", batch=256)(events)
    store.consumer("cf_safe", batch=256)(safe)
    ledger, phases = Ledger(), Phases()
    makers = [lambda n: FailoverEvent(n, n % 8)] * 2
    load = Load(store, ledger, phases, makers, rate=RATE, limit=180.0)
    load.warm_up()
    victim = master_of(url, slot(partition_names("cf_events", 3)[0]))

    phases.enter("normal")
    load.start()
    try:
        time.sleep(3.0)
        # When the master of partition 0 is SIGKILLed mid-load
        phases.enter("fault")
        kill_redis(victim)
        killed = time.monotonic()
        promoted, failover_s = wait_promoted(url, victim)
        time.sleep(3.0)
        # And the dead node is started again (it rejoins as a replica) while the load goes on
        restart_s = restart_missing_nodes()
        wait_cluster_ok(url)
        phases.enter("recovery")
        # (saves to the killed master's slots resume once its successor has a replica again:
        # cf_safe and the task queues wait for one)
        deadline = time.monotonic() + 60
        while first_done_on_victim(ledger, "cf_events", killed) is None:
            assert time.monotonic() < deadline, "no save reached the promoted replica"
            time.sleep(0.5)
        time.sleep(2.0)
    finally:
        load.stop()
        phases.end()
    store.drain(timeout=120)

    # Then no save raised, and the outage really buffered writes
    assert not ledger.errors(), [f"{type(e).__mro__}: {e}" for e in ledger.errors()[:3]]
    assert any(e.has("cf_events", ("buffered",)) for e in ledger.in_phase("fault"))
    follow_s = first_done_on_victim(ledger, "cf_events", killed)
    assert follow_s is not None, "no save reached the promoted replica"
    status = store.status()
    assert status["spool"]["depth"] == 0
    # And the streams delivered every acknowledged entry once (none lost with the master)
    assert_exactly_once("cf_safe", ledger.acked("cf_safe"), safe.counts)
    lost, dup = lost_and_duplicated(ledger.acked("cf_events"), events.counts)
    assert not dup, f"cf_events: duplicated {sorted(dup)[:10]}"
    # (what a master acknowledged and never passed on can only be what it took just before
    # it died: on loopback its replica is a fraction of a millisecond behind)
    assert lost <= acked_between(ledger, "cf_events", killed - 1.0, killed), sorted(lost)[:10]
    # And every volatile value written before its save returned is there, drops counted
    lost_now = volatile_lost(url, ledger, "cf_now")
    assert lost_now <= acked_between(ledger, "cf_now", killed - 1.0, killed)
    dropped = assert_drops_counted(ledger, status, "cf_now", "volatile")
    # And every deferred Cassandra row landed (its task waited for a replica)
    with cassandra_session(amorphous_url) as session:
        docs = cassandra_rows(session, cassandra_keyspace, "cf_docs")
    assert_exactly_once("cf_docs", ledger.acked("cf_docs"), docs)

    metrics.record(
        {
            **phase_metrics(ledger, phases),
            "victim": victim.name,
            "promoted": promoted.name,
            "failover_s": round(failover_s, 2),
            # kill -> the first save written at once to the killed master's slots again
            "client_followed_after_s": follow_s,
            "node_restart_s": round(restart_s, 1),
            "saves": len(ledger.entries),
            "buffered_saves": len(ledger.acked("cf_events", ("buffered",))),
            "lost": {"cf_safe": 0, "cf_events": len(lost), "cf_now": len(lost_now), "cf_docs": 0},
            "duplicated": {"cf_safe": 0, "cf_events": len(dup), "cf_docs": 0},
            "dropped_volatile": dropped,
        }
    )


def _loads(
    make_store: StoreFactory, url: str, tmp: Path
) -> tuple[dict[str, pio.Persistio], dict[str, Ledger], Phases, list[Load]]:
    """Two stores (one per intent, so one's circuit never holds the other back), each loaded."""
    phases = Phases()
    stores: dict[str, pio.Persistio] = {}
    ledgers: dict[str, Ledger] = {}
    loads: list[Load] = []
    makers: dict[str, Callable[[int], Any]] = {"cf_lag_plain": LagPlain, "cf_lag_safe": LagSafe}
    for intent, make in makers.items():
        store = make_store(
            transitory=url,
            volatile=url,
            data_dir=tmp / intent,
            realtime_deadline=DEADLINE,
            breaker=BREAKER,
        )
        store.setup()
        stores[intent], ledgers[intent] = store, Ledger()
        load = Load(store, ledgers[intent], phases, [make], rate=RATE, limit=180.0)
        loads.append(load)
    return stores, ledgers, phases, loads


def test_a_master_that_dies_while_its_replica_lags_loses_only_what_did_not_wait(
    cluster_redis_url: str, make_store: StoreFactory, tmp_path: Path, metrics: Metrics
) -> None:
    url = cluster_redis_url
    redis_clients.flush(url)
    stores, ledgers, phases, loads = _loads(make_store, url, tmp_path)
    victim = master_of(url, slot(partition_names("cf_lag_plain", 3)[0]))
    assert victim == master_of(url, slot(partition_names("cf_lag_safe", 3)[0]))
    replica = replica_of(url, victim)
    replica_pid = redis_pid(replica)

    phases.enter("normal")
    for load in loads:
        load.start()
    try:
        time.sleep(2.0)
        # When the master's replica stops (SIGSTOP) and the master drops its replication link,
        # so that what the master takes from now on never reaches the replica
        with frozen(lambda: [replica_pid], watchdog=30.0):
            phases.enter("fault")
            with node_client(victim) as master:
                master.execute_command("CLIENT", "KILL", "TYPE", "replica")
            lag_start = time.monotonic()
            time.sleep(2.0)
            # And the master is SIGKILLed before the replica catches up
            kill_redis(victim)
            killed = time.monotonic()
        # Then (SIGCONT) the lagging replica is promoted all the same
        promoted, failover_s = wait_promoted(url, victim)
        time.sleep(2.0)
        restart_missing_nodes()
        wait_cluster_ok(url)
        phases.enter("recovery")
        time.sleep(2.0)
    finally:
        for load in loads:
            load.stop()
        phases.end()
    got: dict[str, Deliveries] = {}
    for intent, store in stores.items():
        got[intent] = Deliveries()
        store.consumer(intent, batch=256)(got[intent])
        store.drain(timeout=120)
        assert not ledgers[intent].errors()

    # Then the intent that waited for a replica lost nothing, nor delivered anything twice
    assert_exactly_once(
        "cf_lag_safe", ledgers["cf_lag_safe"].acked("cf_lag_safe"), got["cf_lag_safe"].counts
    )
    # And the other lost what its master acknowledged while the replica lagged, and only that
    plain = ledgers["cf_lag_plain"]
    lost, dup = lost_and_duplicated(plain.acked("cf_lag_plain"), got["cf_lag_plain"].counts)
    window = acked_between(plain, "cf_lag_plain", lag_start, killed)
    assert not dup
    assert lost, "nothing was lost: the replica did not lag"
    assert lost <= window, sorted(lost - window)[:10]

    metrics.record(
        {
            "victim": victim.name,
            "promoted": promoted.name,
            "failover_s": round(failover_s, 2),
            # the store without WAIT: kill -> its first save written at once on those slots
            "client_followed_after_s": first_done_on_victim(plain, "cf_lag_plain", killed),
            "lag_window_s": round(killed - lag_start, 2),
            "acked_in_window": len(window),
            "lost": {"cf_lag_plain": len(lost), "cf_lag_safe": 0},
            "duplicated": {"cf_lag_plain": 0, "cf_lag_safe": 0},
            "saves": {i: len(ledger.entries) for i, ledger in ledgers.items()},
            "buffered_safe": len(ledgers["cf_lag_safe"].acked("cf_lag_safe", ("buffered",))),
        }
    )
