"""The transitory tier on Redis Streams: what lands in Redis, read back with a raw client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest
import redis

from persistio.backends.base import Append, Delivery, Options, StreamSpec
from persistio.backends.redis.server import RedisStore as RedisStreams
from persistio.backends.redis.server import from_url
from persistio.backends.redis.streams import GROUP
from persistio.errors import BackendUnavailable, ConfigError

VISIBILITY = 0.2


@pytest.fixture
def options(tmp_path: Path) -> Options:
    return Options(tmp_path, connect_timeout=0.5, request_timeout=2.0)


@pytest.fixture
def streams(db_url: str, options: Options, raw: redis.Redis) -> Iterator[RedisStreams]:
    backend = from_url(db_url, options, "transitory")
    try:
        yield backend
    finally:
        backend.close()


def spec(name: str = "notify_friends", max_age_seconds: float | None = None) -> StreamSpec:
    return StreamSpec(name, 3, VISIBILITY, max_age_seconds)


def items(*dedups: str) -> list[tuple[str, bytes]]:
    return [(d, f"payload-{d}".encode()) for d in dedups]


def enqueue(backend: RedisStreams, stream: StreamSpec, entries: list[tuple[str, bytes]]) -> int:
    """Append entries a consumer sees (deduplicated); how many were new."""
    return sum(backend.write([Append(stream, d, p) for d, p in entries]))


def fields_of(raw: redis.Redis, key: str) -> list[dict[bytes, bytes]]:
    """The fields of every entry of a stream, oldest first."""
    return [cast("dict[bytes, bytes]", fields) for _, fields in raw.xrange(key) or []]


def pending_count(raw: redis.Redis, key: str) -> int:
    return int(raw.xpending(key, GROUP)["pending"])


def test_setup_creates_stream_and_group_idempotently(
    streams: RedisStreams, raw: redis.Redis
) -> None:
    # Given an intent stream and a task queue
    specs = [spec(), spec("tasks.high")]

    # When setup runs twice
    streams.setup(specs)
    streams.setup(specs)

    # Then each stream exists with one group that starts at id 0, under hash-tagged key names
    for key in ("pio:{notify_friends}", "pio:{tasks.high}"):
        groups = raw.xinfo_groups(key)
        assert [(g["name"], g["last-delivered-id"]) for g in groups] == [(b"persistio", b"0-0")]


def test_enqueue_deduplicates_by_dedup_key(streams: RedisStreams, raw: redis.Redis) -> None:
    # Given an item already enqueued
    assert enqueue(streams, spec(), items("w1")) == 1

    # When the same dedup key is enqueued again, also twice within one batch
    added = enqueue(streams, spec(), [*items("w1"), *items("w2"), *items("w2")])

    # Then only the new one was added, with its fields, and each marker expires with the window
    assert added == 1
    assert raw.xlen("pio:{notify_friends}") == 2
    fields = fields_of(raw, "pio:{notify_friends}")
    assert [(f[b"d"], f[b"p"]) for f in fields] == [(b"w1", b"payload-w1"), (b"w2", b"payload-w2")]
    assert abs(float(fields[0][b"t"]) - time.time()) < 5
    assert 3_500_000 < raw.pttl("pio:{notify_friends}:seen:w1") <= 3_600_000


def test_task_queue_entries_are_not_deduplicated_and_leave_no_marker(
    streams: RedisStreams, raw: redis.Redis
) -> None:
    # Given a task queue entry (its effect is a last-write-wins write: a duplicate is harmless)
    task = Append(spec("tasks.normal"), "w1:feed", b"task", dedupe=False)

    # When it is appended twice
    assert streams.write([task, task]) == [True, True]

    # Then both entries are there and Redis holds nothing else for them
    assert raw.xlen("pio:{tasks.normal}") == 2
    assert raw.keys("pio:{tasks.normal}:seen:*") == []


def test_enqueue_batches_large_inputs(streams: RedisStreams, raw: redis.Redis) -> None:
    # Given 1200 items, 200 of them already enqueued
    enqueue(streams, spec(), items(*(f"w{i}" for i in range(200))))

    # When all 1200 are enqueued (two script calls in one pipeline)
    added = enqueue(streams, spec(), items(*(f"w{i}" for i in range(1200))))

    # Then only the 1000 new ones were added
    assert added == 1000
    assert raw.xlen("pio:{notify_friends}") == 1200


def test_enqueue_and_claim_work_without_setup(streams: RedisStreams, raw: redis.Redis) -> None:
    # Given a stream that was never set up, and one whose entries predate its group
    raw.xadd("pio:{tasks.low}", {"d": "early", "p": "x", "t": "1.0"})

    # When items are enqueued and claimed
    enqueue(streams, spec(), items("w1"))
    fresh = streams.claim(spec(), "c1", 10)
    early = streams.claim(spec("tasks.low"), "c1", 10)

    # Then the groups were created on the way and deliver everything, early entries included
    assert [d.dedup for d in fresh] == ["w1"]
    assert [(d.dedup, d.payload, d.enqueued_at) for d in early] == [("early", b"x", 1.0)]
    assert raw.xinfo_groups("pio:{tasks.low}")[0]["name"] == b"persistio"


def test_claim_hands_out_each_new_entry_once(streams: RedisStreams, raw: redis.Redis) -> None:
    # Given three enqueued items
    enqueue(streams, spec(), items("a", "b", "c"))

    # When two consumers claim, the first at most two items
    first = streams.claim(spec(), "c1", 2)
    second = streams.claim(spec(), "c2", 10)
    third = streams.claim(spec(), "c3", 10)

    # Then each item went to one consumer once, oldest first, and all three are pending
    assert [(d.dedup, d.payload, d.deliveries) for d in first] == [
        ("a", b"payload-a", 1),
        ("b", b"payload-b", 1),
    ]
    assert [d.dedup for d in second] == ["c"]
    assert third == []
    assert pending_count(raw, "pio:{notify_friends}") == 3
    assert all(abs(d.enqueued_at - time.time()) < 5 for d in first)


def test_ack_expunges(streams: RedisStreams, raw: redis.Redis) -> None:
    # Given two claimed items
    enqueue(streams, spec(), items("a", "b"))
    claimed = streams.claim(spec(), "c1", 10)

    # When both are acknowledged
    streams.ack(spec(), [d.id for d in claimed])

    # Then the stream holds nothing, pending or not, and nothing is handed out again
    assert raw.xlen("pio:{notify_friends}") == 0
    assert pending_count(raw, "pio:{notify_friends}") == 0
    time.sleep(VISIBILITY + 0.05)
    assert streams.claim(spec(), "c1", 10) == []


def test_unacked_entry_is_redelivered_after_visibility(
    streams: RedisStreams, raw: redis.Redis
) -> None:
    # Given an item claimed by a consumer that never acknowledges it
    enqueue(streams, spec(), items("a"))
    [first] = streams.claim(spec(), "dead-consumer", 10)

    # When another consumer claims before and after the visibility timeout
    early = streams.claim(spec(), "c2", 10)
    time.sleep(VISIBILITY + 0.05)
    [again] = streams.claim(spec(), "c2", 10)

    # Then it is handed out again, same id, delivery count 2, now owned by c2
    assert early == []
    assert (again.id, again.dedup, again.deliveries) == (first.id, "a", 2)
    [entry] = raw.xpending_range("pio:{notify_friends}", GROUP, "-", "+", 10)
    assert (entry["consumer"], entry["times_delivered"]) == (b"c2", 2)


def test_release_makes_entry_claimable_after_delay(streams: RedisStreams, raw: redis.Redis) -> None:
    # Given a claimed item whose handler failed
    enqueue(streams, spec(), items("a"))
    [delivery] = streams.claim(spec(), "c1", 10)

    # When it is released with a 0.1 s delay (visibility is 0.2 s)
    streams.release(spec(), delivery, 0.1)

    # Then it stays pending (not counted as delivered again) and comes back after the delay
    [entry] = raw.xpending_range("pio:{notify_friends}", GROUP, "-", "+", 10)
    assert entry["times_delivered"] == 1
    assert streams.claim(spec(), "c1", 10) == []
    time.sleep(0.15)
    [again] = streams.claim(spec(), "c1", 10)
    assert (again.id, again.deliveries) == (delivery.id, 2)


def test_release_delay_longer_than_visibility_is_cut_to_it(streams: RedisStreams) -> None:
    # Given a claimed item
    enqueue(streams, spec(), items("a"))
    [delivery] = streams.claim(spec(), "c1", 10)

    # When it is released with a delay far beyond the visibility timeout
    streams.release(spec(), delivery, 60.0)

    # Then it is claimable once the visibility timeout has passed, as after a consumer crash
    time.sleep(VISIBILITY + 0.05)
    assert [d.id for d in streams.claim(spec(), "c1", 10)] == [delivery.id]


def test_release_of_a_finished_entry_is_a_no_op(streams: RedisStreams, raw: redis.Redis) -> None:
    # Given one delivery acknowledged elsewhere, and one whose stream was deleted
    enqueue(streams, spec(), items("a"))
    enqueue(streams, spec("other"), items("b"))
    [acked] = streams.claim(spec(), "c1", 10)
    [orphan] = streams.claim(spec("other"), "c1", 10)
    streams.ack(spec(), [acked.id])
    raw.delete("pio:{other}")

    # When both are released
    streams.release(spec(), acked, 0.1)
    streams.release(spec("other"), orphan, 0.1)

    # Then nothing comes back to life
    assert raw.xlen("pio:{notify_friends}") == 0
    assert pending_count(raw, "pio:{notify_friends}") == 0
    assert raw.exists("pio:{other}") == 0


def test_dead_letter_moves_the_entry(streams: RedisStreams, raw: redis.Redis) -> None:
    # Given an item delivered for the last time
    enqueue(streams, spec(), items("a", "b"))
    delivery = streams.claim(spec(), "c1", 1)[0]

    # When it is dead-lettered
    streams.dead_letter(spec(), delivery, "ValueError: bad")

    # Then it left the stream and its pending list, and the dead-letter stream holds it
    assert [f[b"d"] for f in fields_of(raw, "pio:{notify_friends}")] == [b"b"]
    assert pending_count(raw, "pio:{notify_friends}") == 0
    [dead] = fields_of(raw, "pio:{notify_friends}:dead")
    assert dead[b"dedup"] == b"a"
    assert dead[b"payload"] == b"payload-a"
    assert dead[b"deliveries"] == b"1"
    assert dead[b"reason"] == b"ValueError: bad"
    assert abs(float(dead[b"at"]) - time.time()) < 5
    assert streams.stats(spec()).dead_letters == 1


def test_entries_past_max_age_are_dead_lettered(streams: RedisStreams, raw: redis.Redis) -> None:
    # Given a stream with a 0.2 s max age: one entry in flight and one never claimed
    aged = spec(max_age_seconds=0.2)
    enqueue(streams, aged, items("in_flight"))
    [in_flight] = streams.claim(aged, "c1", 10)
    enqueue(streams, aged, items("waiting"))

    # When a claim runs after both grew too old, and a fresh item is there
    time.sleep(0.25)
    enqueue(streams, aged, items("fresh"))
    claimed = streams.claim(aged, "c1", 10)

    # Then only the fresh item is handed out; both old ones moved to the dead-letter stream
    assert [d.dedup for d in claimed] == ["fresh"]
    dead = {f[b"dedup"]: f for f in fields_of(raw, "pio:{notify_friends}:dead")}
    assert set(dead) == {b"in_flight", b"waiting"}
    assert {f[b"reason"] for f in dead.values()} == {b"expired: older than max_age"}
    assert (dead[b"in_flight"][b"deliveries"], dead[b"waiting"][b"deliveries"]) == (b"1", b"0")
    assert raw.xlen("pio:{notify_friends}") == 1
    assert in_flight.id.encode() not in {
        p["message_id"] for p in raw.xpending_range("pio:{notify_friends}", GROUP, "-", "+", 10)
    }


def test_entry_deleted_while_pending_is_cleaned(streams: RedisStreams, raw: redis.Redis) -> None:
    # Given a claimed item that someone deleted with redis-cli before it was acknowledged
    enqueue(streams, spec(), items("a"))
    [delivery] = streams.claim(spec(), "c1", 10)
    raw.xdel("pio:{notify_friends}", delivery.id)

    # When it would be redelivered
    time.sleep(VISIBILITY + 0.05)
    claimed = streams.claim(spec(), "c2", 10)

    # Then nothing is handed out and the pending list no longer refers to it
    assert claimed == []
    assert pending_count(raw, "pio:{notify_friends}") == 0


def test_stats(streams: RedisStreams) -> None:
    # Given an empty stream
    assert tuple(streams.stats(spec())) == (0, None, 0, 0)

    # When three items are enqueued, one claimed (in flight), one acknowledged
    enqueue(streams, spec(), items("a", "b", "c"))
    time.sleep(0.05)
    first, _ = streams.claim(spec(), "c1", 2)
    streams.ack(spec(), [first.id])
    stats = streams.stats(spec())

    # Then two are pending (in flight included), the oldest is about 0.05 s old, no dead letters
    assert stats.pending == 2
    assert stats.oldest_age_seconds is not None
    assert 0.04 <= stats.oldest_age_seconds < 2
    assert stats.dead_letters == 0


def test_delivery_round_trips_binary_payloads(streams: RedisStreams) -> None:
    # Given a payload with every byte value
    payload = bytes(range(256))

    # When it is enqueued and claimed
    enqueue(streams, spec(), [("0190d1c4-7c8e-7b6a-9f00-000000000001", payload)])
    [delivery] = streams.claim(spec(), "c1", 1)

    # Then it comes back unchanged
    assert isinstance(delivery, Delivery)
    assert delivery.payload == payload
    assert delivery.dedup == "0190d1c4-7c8e-7b6a-9f00-000000000001"


def test_only_stream_names_become_key_names(streams: RedisStreams) -> None:
    # Given names that would escape the hash tag or the key layout
    for bad in ("Bad", "a}b", "x:y", "tasks.", "", "a b"):
        # Then they are refused before anything reaches Redis
        with pytest.raises(ValueError, match="not a stream name"):
            enqueue(streams, spec(bad), items("a"))


def test_unreachable_server_raises_backend_unavailable(tmp_path: Path) -> None:
    # Given a URL where nothing listens, with a password
    options = Options(tmp_path, connect_timeout=0.2, request_timeout=0.2)
    backend = from_url("redis://user:s3cret@127.0.0.1:1/0", options, "transitory")

    # When any operation runs, then it raises BackendUnavailable for the tier, password hidden
    calls: list[Callable[[], object]] = [
        backend.ping,
        lambda: backend.setup([spec()]),
        lambda: enqueue(backend, spec(), items("a")),
        lambda: backend.claim(spec(), "c1", 1),
        lambda: backend.ack(spec(), ["1-0"]),
        lambda: backend.stats(spec()),
    ]
    started = time.monotonic()
    for call in calls:
        with pytest.raises(BackendUnavailable) as caught:
            call()
        assert caught.value.tier == "transitory"
        assert "s3cret" not in str(caught.value)
        assert "***" in str(caught.value)
    assert time.monotonic() - started < 2
    backend.close()


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:notaport/0", "redis://:s3cret@/0", "redis://127.0.0.1:6379/zero"]
)
def test_malformed_url_raises_config_error(url: str, options: Options) -> None:
    # When the backend is built from a malformed URL
    with pytest.raises(ConfigError) as caught:
        from_url(url, options, "PERSISTIO_TRANSITORY_URL")

    # Then the error names the setting and never shows the password
    assert "PERSISTIO_TRANSITORY_URL" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_consumers_of_gone_workers_are_forgotten(streams: RedisStreams, raw: redis.Redis) -> None:
    # Given two consumers: one that took and acknowledged an entry, one still holding one
    enqueue(streams, spec(), items("a", "b"))
    (done,) = streams.claim(spec(), "gone-worker", 1)
    streams.ack(spec(), [done.id])
    streams.claim(spec(), "busy-worker", 1)

    # When consumers idle for more than 0 s and holding nothing are pruned
    time.sleep(0.01)
    removed = streams.prune_consumers(spec(), 0.0)

    # Then only the one holding nothing is gone from the group
    assert removed == 1
    names = {c["name"] for c in raw.xinfo_consumers("pio:{notify_friends}", GROUP)}
    assert names == {b"busy-worker"}


def test_a_stream_nobody_consumes_stays_within_max_len(
    streams: RedisStreams, raw: redis.Redis
) -> None:
    # Given a stream bounded to 50 entries, and no consumer at all
    bounded = StreamSpec("notify_friends", 3, VISIBILITY, None, max_len=50)

    # When 500 entries are appended, ten at a time
    for start in range(0, 500, 10):
        streams.write([Append(bounded, f"w{i}", b"x") for i in range(start, start + 10)])

    # Then the stream holds about its bound (Redis trims whole nodes of 100 entries), and every
    # entry trimmed is counted
    length = raw.xlen("pio:{notify_friends}")
    assert 50 <= length <= 150
    assert streams.trimmed == {"notify_friends": 500 - length}
