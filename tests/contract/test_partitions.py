"""Given partitioned streams and task queues, order per key, priorities and exactly-once hold.

The same tests run on the embedded queue, one Redis, and (make test-cluster) a Redis Cluster,
where the partitions live on different masters. What each partition holds is read with raw
clients: the Redis streams ``pio:{<partition>}``, or the SQLite queue's ``items`` table.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from datetime import timedelta
from typing import Any

import msgspec

import persistio as pio
from persistio.model.partitions import partition_names
from persistio.testing import planned_writes, replay
from tests import redis_clients
from tests.models import HighWork, LowWork

PARTITIONS = 4


@pio.persist(pio.Transitory("moves", partitions=PARTITIONS, order_by=("user_id",)))
class Move(msgspec.Struct, frozen=True):
    user_id: int
    seq: int


@pio.persist(
    pio.Transitory(
        "flaky_moves",
        partitions=3,
        max_deliveries=2,
        retry_backoff=timedelta(milliseconds=10),
    )
)
class FlakyMove(msgspec.Struct, frozen=True):
    id: int


def stored_entries(store: pio.Persistio, names: tuple[str, ...]) -> dict[str, list[bytes]]:
    """The payloads each stream holds, read with the raw client of its backend."""
    url = store.urls[pio.Tier.TRANSITORY]
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            rows = db.execute("SELECT stream, payload FROM items ORDER BY rowid").fetchall()
        found: dict[str, list[bytes]] = {n: [] for n in names}
        for stream, payload in rows:
            if stream in found:
                found[stream].append(bytes(payload))
        return found
    client = redis_clients.client(url)
    try:
        return {n: [f[b"p"] for _, f in client.xrange(f"pio:{{{n}}}")] for n in names}
    finally:
        client.close()


def test_one_keys_entries_share_a_partition_and_arrive_in_order(store: pio.Persistio) -> None:
    # Given 10 users' moves, 20 each, saved in order into a stream of 4 partitions
    store.save_many(Move(n % 10, n // 10) for n in range(200))

    # Then each user's moves are all in one partition, in order, and the users are spread
    names = partition_names("moves", PARTITIONS)
    held = stored_entries(store, names)
    where: dict[int, set[str]] = defaultdict(set)
    for name, payloads in held.items():
        moves = [msgspec.msgpack.decode(p, type=Move) for p in payloads]
        for move in moves:
            where[move.user_id].add(name)
        for user in {m.user_id for m in moves}:
            seqs = [m.seq for m in moves if m.user_id == user]
            assert seqs == sorted(seqs), f"user {user} out of order in {name}"
    assert sum(len(p) for p in held.values()) == 200
    assert all(len(parts) == 1 for parts in where.values()), dict(where)
    assert len({next(iter(parts)) for parts in where.values()}) > 1, "one partition took all"

    # When a consumer drains the stream
    seen: list[Move] = []
    store.consumer("moves", batch=16)(seen.append)
    store.drain(timeout=60)

    # Then it saw every move once, each user's in order, and nothing is left in any partition
    assert sorted((m.user_id, m.seq) for m in seen) == sorted((n % 10, n // 10) for n in range(200))
    for user in range(10):
        assert [m.seq for m in seen if m.user_id == user] == list(range(20))
    assert store.status()["streams"]["moves"] == {
        "pending": 0,
        "oldest_age_s": None,
        "dead_letters": 0,
    }
    assert all(not p for p in stored_entries(store, names).values())


def test_a_replayed_write_to_a_partitioned_stream_is_delivered_once(store: pio.Persistio) -> None:
    # Given one save's write applied three times (a spool replay after a lost answer)
    got: list[Move] = []
    store.consumer("moves")(got.append)
    (work,) = planned_writes(store, Move(7, 1))
    for _ in range(3):
        replay(store, [work])

    # When it is drained; Then the consumer saw it once (it went to the same partition each time)
    store.drain(timeout=30)
    assert got == [Move(7, 1)]


def test_high_work_in_any_partition_runs_before_low_work(make_store: Any) -> None:
    # Given task queues of 3 partitions and a backlog of LOW tasks spread over them
    store = make_store(task_queues=pio.TaskQueues(partitions=3))
    store.save_many(LowWork(i % 7, i) for i in range(900))
    low = stored_entries(store, partition_names("tasks.low", 3))
    assert sum(len(p) for p in low.values()) == 900
    assert all(len(p) > 200 for p in low.values()), {n: len(p) for n, p in low.items()}
    assert store.status()["queues"]["low"]["pending"] == 900

    # And one LOW batch already taken
    assert store.step()

    # When HIGH tasks arrive (in whichever partitions their write ids pick)
    store.save_many(HighWork(i, "now") for i in range(1, 4))

    # Then the very next poll runs HIGH ones, ahead of the LOW backlog of every partition
    assert store.step()
    done = [store.get(HighWork, "urgent", id=i) for i in range(1, 4)]
    assert any(done)
    while store.status()["queues"]["high"]["pending"]:
        assert store.step()
    assert all(store.get(HighWork, "urgent", id=i) for i in range(1, 4))
    assert store.status()["queues"]["low"]["pending"] >= 900 - 2 * 256
    store.drain(timeout=120)
    assert store.status()["queues"]["low"]["pending"] == 0


def test_dead_letters_name_their_partition_and_redrive_there(store: pio.Persistio) -> None:
    # Given a consumer that fails item 2 while a bug is in it
    broken = {"yes": True}
    seen: list[int] = []

    @store.consumer("flaky_moves")
    def handle(move: FlakyMove) -> None:
        if move.id == 2 and broken["yes"]:
            raise RuntimeError("bug")
        seen.append(move.id)

    store.save_many(FlakyMove(i) for i in range(1, 7))
    store.drain(timeout=30)

    # Then its dead letter says which partition of the stream holds it
    (letter,) = store.dead_letters()
    assert letter.intent == "flaky_moves"
    assert letter.place.startswith("stream:flaky_moves.")
    assert letter.place.removeprefix("stream:flaky_moves.") in {"0", "1", "2"}
    assert store.status()["streams"]["flaky_moves"]["dead_letters"] == 1

    # And a redrive puts it back there, where the consumer takes it
    broken["yes"] = False
    assert store.redrive(intent="flaky_moves") == 1
    store.drain(timeout=30)
    assert sorted(seen) == [1, 2, 3, 4, 5, 6]
    assert store.dead_letters() == []
