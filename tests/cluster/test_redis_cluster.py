"""The Redis Cluster backend: where writes land, how they are sent, and what it follows.

Every check reads the nodes themselves: ``INFO commandstats`` for the calls a master served,
``XRANGE`` / ``HGET`` on the master (or replica) that owns a key's slot.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import msgspec
import pytest

import persistio as pio
from persistio.model.partitions import partition_names, slot
from tests import redis_clients

from .nodes import RedisNode, master_of, node_client, redis_nodes, replica_of

pytestmark = pytest.mark.cluster


@pio.persist(
    pio.Transitory("cl_events", partitions=3, order_by=("user_id",)),
    pio.Volatile("cl_now", key=("user_id",), ttl=timedelta(minutes=5)),
)
class ClEvent(msgspec.Struct, frozen=True):
    user_id: int
    note: str


@pio.persist(pio.Transitory("cl_safe", partitions=3, replicas=1))
class ClSafe(msgspec.Struct, frozen=True):
    n: int


@pio.persist(pio.Transitory("cl_greedy", replicas=2))
class ClGreedy(msgspec.Struct, frozen=True):
    n: int


@pio.persist(pio.Amorphous("cl_docs", partition=("n",)))
class ClDoc(msgspec.Struct, frozen=True):
    n: int


@pytest.fixture
def cluster_store(cluster_redis_url: str, make_store: Any) -> pio.Persistio:
    redis_clients.flush(cluster_redis_url)
    store: pio.Persistio = make_store(transitory=cluster_redis_url, volatile=cluster_redis_url)
    store.setup()
    return store


def evalsha_calls(url: str) -> dict[str, int]:
    """EVALSHA calls each master has served so far."""
    found: dict[str, int] = {}
    for node in redis_nodes(url):
        if node.master and node.slots:
            with node_client(node) as client:
                stats: Any = client.info("commandstats")
            found[node.name] = int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    return found


def test_a_batch_is_one_script_call_per_slot_spread_over_the_masters(
    cluster_store: pio.Persistio, cluster_redis_url: str
) -> None:
    # Given 30 events of 30 users: 30 volatile keys (a slot each) and 3 stream partitions
    events = [ClEvent(user, f"hello {user}") for user in range(30)]
    slots = {slot(str(e.user_id)) for e in events} | {
        slot(name) for name in partition_names("cl_events", 3)
    }
    cluster_store.save_many(ClEvent(u, "warm") for u in range(100, 130))  # scripts loaded
    before = evalsha_calls(cluster_redis_url)

    # When they are saved in one batch
    receipts = cluster_store.save_many(events)

    # Then the masters served one script call per slot between them, each master some
    after = evalsha_calls(cluster_redis_url)
    served = {name: after[name] - before.get(name, 0) for name in after}
    # (plus at most a couple of the store's clock syncs: one script call a second)
    assert len(slots) <= sum(served.values()) <= len(slots) + 2
    assert all(n > 0 for n in served.values()), served
    # And every intent was written at once, in one round of the combiner
    assert all(sorted(r.done) == ["cl_events", "cl_now"] for r in receipts)
    flushes = cluster_store.status()["group_commit"]["transitory/volatile"]["flushes"]
    assert flushes == 2  # the warm-up's and this one
    # And each value and entry is on the master that owns its slot
    for event in events:
        owner = master_of(cluster_redis_url, slot(str(event.user_id)))
        with node_client(owner) as client:
            assert client.hget(f"pio:v:cl_now:{{{event.user_id}}}", "p") is not None
    held = 0
    for name in partition_names("cl_events", 3):
        with node_client(master_of(cluster_redis_url, slot(name))) as client:
            held += int(client.xlen(f"pio:{{{name}}}"))
    assert held == 60  # the warm-up's 30 and these 30


def _move_slot(url: str, moved: int, source: RedisNode, target: RedisNode) -> None:
    """Migrate one slot and its keys from ``source`` to ``target`` (what a resharding does)."""
    with node_client(source) as src, node_client(target) as dst:
        dst.execute_command("CLUSTER", "SETSLOT", moved, "IMPORTING", source.node_id)
        src.execute_command("CLUSTER", "SETSLOT", moved, "MIGRATING", target.node_id)
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", moved, 100):
            src.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys)
        for node in redis_nodes(url):
            if node.master:
                with node_client(node) as client:
                    client.execute_command("CLUSTER", "SETSLOT", moved, "NODE", target.node_id)


def test_writes_follow_a_slot_that_moved_to_another_master(
    cluster_store: pio.Persistio, cluster_redis_url: str
) -> None:
    # Given a store that has written to a partition, so it knows which master holds it
    name = partition_names("cl_events", 3)[0]
    user = next(u for u in range(1000) if _partition_of(u) == name)
    cluster_store.save(ClEvent(user, "before"))
    source = master_of(cluster_redis_url, slot(name))
    target = next(n for n in redis_nodes(cluster_redis_url) if n.master and n != source)

    # When that slot moves to another master behind the store's back
    _move_slot(cluster_redis_url, slot(name), source, target)
    try:
        # Then the next save follows the MOVED redirect and lands on the new owner
        receipt = cluster_store.save(ClEvent(user, "after"))
        assert "cl_events" in receipt.done
        with node_client(target) as client:
            notes = [
                msgspec.msgpack.decode(f[b"p"], type=ClEvent).note
                for _, f in client.xrange(f"pio:{{{name}}}")
            ]
        assert notes == ["before", "after"]
        # And a consumer reads both, once
        got: list[ClEvent] = []
        cluster_store.consumer("cl_events")(got.append)
        cluster_store.drain(timeout=30)
        assert [e.note for e in got] == ["before", "after"]
    finally:
        _move_slot(cluster_redis_url, slot(name), target, source)


def _partition_of(user: int) -> str:
    from persistio.model.partitions import pick

    return partition_names("cl_events", 3)[pick(str(user), 3)]


def test_scripts_a_master_lost_are_loaded_again(
    cluster_store: pio.Persistio, cluster_redis_url: str
) -> None:
    # Given masters whose script caches were emptied (a restart, a promoted replica)
    cluster_store.save(ClEvent(1, "warm"))
    for node in redis_nodes(cluster_redis_url):
        if node.master:
            with node_client(node) as client:
                client.script_flush()

    # When a batch reaches every master; Then it is written (NOSCRIPT -> SCRIPT LOAD -> again)
    receipts = cluster_store.save_many(ClEvent(u, "cold") for u in range(20))
    assert all("cl_now" in r.done for r in receipts)
    assert cluster_store.get(ClEvent, "cl_now", user_id=7) == ClEvent(7, "cold")


def test_replicas_1_acknowledges_once_the_replica_holds_the_entry(
    cluster_store: pio.Persistio, cluster_redis_url: str
) -> None:
    # Given a stream whose appends ask for one replica
    for n in range(30):
        # When each save returns
        receipt = cluster_store.save(ClSafe(n))
        assert receipt.done == ("cl_safe",)
    # Then every entry is already on a replica of its master (read there, READONLY)
    held = 0
    for name in partition_names("cl_safe", 3):
        master = master_of(cluster_redis_url, slot(name))
        with node_client(replica_of(cluster_redis_url, master)) as client:
            held += int(client.xlen(f"pio:{{{name}}}"))
    assert held == 30


def test_more_replicas_than_the_cluster_has_buffer_and_warn(
    cluster_store: pio.Persistio,
) -> None:
    # Given a stream whose appends ask for 2 replicas, on masters that have 1
    receipt = cluster_store.save(ClGreedy(1))
    # Then the save is buffered (never acknowledged short of its replicas), and status says why
    assert receipt.buffered == ("cl_greedy",)
    status = cluster_store.status()
    assert status["spool"]["depth"] == 1
    assert any("fewer than 2 replica(s)" in w for w in status["warnings"]), status["warnings"]


def test_a_healthy_cluster_has_no_warnings(
    cluster_store: pio.Persistio, cluster_redis_url: str, amorphous_url: str, make_store: Any
) -> None:
    # Given the Redis Cluster (a replica per master) and a keyspace replicated 3 times
    store = make_store(
        transitory=cluster_redis_url, volatile=cluster_redis_url, amorphous=amorphous_url
    )
    store.setup()
    # Then status warns about nothing, and every backend is healthy
    status = store.status()
    assert status["warnings"] == []
    assert all(b["healthy"] for b in status["backends"].values())


def test_a_keyspace_with_one_replica_is_a_warning(
    cluster_cassandra_url: str, make_store: Any
) -> None:
    # Given a keyspace made with replication 1 on the 3-node cluster (by a store's setup)
    name = f"persistio_w_{uuid.uuid4().hex[:8]}"
    one = cluster_cassandra_url.replace("replication=3", "replication=1")
    store = make_store(amorphous=one.replace("/persistio_test", f"/{name}"))
    store.setup()
    store.save(ClDoc(1))
    store.drain(timeout=30)
    assert store.query(ClDoc, "cl_docs", n=1) == [ClDoc(1)]
    try:
        # Then status warns that a node's loss loses its data
        (warning,) = store.status()["warnings"]
        assert f"keyspace {name} has replication 1" in warning
        # And a store whose URL asks for 3 on that keyspace is told it was never altered
        three = make_store(amorphous=cluster_cassandra_url.replace("/persistio_test", f"/{name}"))
        warnings = three.status()["warnings"]
        assert any("while the URL asks for 3" in w for w in warnings), warnings
    finally:
        _drop_keyspace(cluster_cassandra_url, name)


def _drop_keyspace(url: str, name: str) -> None:
    from tests.conftest import cassandra_session

    with cassandra_session(url, request_timeout=60) as session:
        session.execute(f"DROP KEYSPACE IF EXISTS {name}")


def test_an_unreachable_cluster_is_an_outage_not_a_crash(make_store: Any) -> None:
    # Given a store on cluster nodes nobody runs
    url = "redis+cluster://127.0.0.1:1,127.0.0.1:2/"
    store = make_store(transitory=url, volatile=url, connect_timeout=0.5, realtime_deadline=1.0)
    # When it saves; Then the writes are buffered (transitory) and dropped (volatile), counted
    t0 = time.monotonic()
    receipt = store.save(ClEvent(1, "x"))
    assert time.monotonic() - t0 < 3.0
    assert receipt.buffered == ("cl_events",)
    assert receipt.dropped == ("cl_now",)
    status = store.status()
    assert status["dropped"] == {"volatile:cl_now": 1}
    with pytest.raises(pio.BackendUnavailable):
        store.get(ClEvent, "cl_now", user_id=1)
