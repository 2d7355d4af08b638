"""Given Count intents, reads return exact counts per bucket, and the stores hold exactly that."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import persistio as pio
from persistio.testing import planned_uncount, planned_writes, replay, wait_for_folds
from tests.contract.counts_raw import held
from tests.models import DAY, HOUR, MINUTE, Blip, Hit, Versioned

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def floor(at: datetime, size: timedelta) -> datetime:
    return EPOCH + (at - EPOCH) // size * size


def us(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1)


def page() -> str:
    return f"p-{uuid.uuid4().hex[:12]}"


def test_counts_per_bucket_are_exact_with_zeros_and_the_store_holds_them(
    store: pio.Persistio, backend_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # Given hits over three hours of one page (event time), two of them heavier
    p = page()
    start = floor(datetime.now(UTC), HOUR) - 3 * HOUR
    minutes = [0, 1, 1, 5, 59, 60, 61, 150]
    hits = [Hit(i, p, start + i_min * MINUTE, weight=1 + i % 2) for i, i_min in enumerate(minutes)]
    receipts = store.save_many(hits)

    # Then the deferred count is not there before a worker runs
    assert all(r.deferred == ("hit_saves", "hit_events", "hit_users") for r in receipts)
    assert store.count(Hit, "hit_events", since=start, until=start + 3 * HOUR, page=p) == 0

    # When the workers have run
    store.drain(timeout=30)

    # Then the hourly series has every bucket, zeros included, and the total is their sum
    by_hour = Counter[datetime]()
    for h in hits:
        by_hour[floor(h.at, HOUR)] += h.weight
    series = store.counts(
        Hit, "hit_events", since=start, until=start + 4 * HOUR, page=p, granularity=HOUR
    )
    assert series == [(start + i * HOUR, by_hour[start + i * HOUR]) for i in range(4)]
    assert series[3][1] == 0
    total = sum(h.weight for h in hits)
    assert store.count(Hit, "hit_events", since=start, until=start + 3 * HOUR, page=p) == total
    # a range that starts mid-minute takes in that whole minute; per-minute series too
    assert (
        store.count(Hit, "hit_events", since=start + 90 * MINUTE + timedelta(seconds=30), page=p)
        == 2
    )
    minute_series = store.counts(Hit, "hit_events", since=start, until=start + 2 * MINUTE, page=p)
    assert minute_series == [(start, 1), (start + MINUTE, 2 + 1)]

    # And once folded, the store holds one rollup per bucket and size with exactly those
    # counts, nothing left pending
    wait_for_folds(store)
    raw = held(request, backend_kind, tmp_path, "hit_events", p)
    expected = {(3600, us(t)): n for t, n in by_hour.items()}
    assert {k: v for k, v in raw.rollups.items() if k[0] == 3600} == expected
    by_day = Counter[datetime]()
    for h in hits:
        by_day[floor(h.at, DAY)] += h.weight
    days = {(86_400, us(t)): n for t, n in by_day.items()}
    assert {k: v for k, v in raw.rollups.items() if k[0] == 86_400} == days
    assert raw.pending == 0


def test_a_save_counts_in_the_bucket_of_its_write_time_a_late_event_in_its_own(
    store: pio.Persistio,
) -> None:
    # Given a hit from three days ago, saved now (a late event)
    p = page()
    old = datetime.now(UTC) - 3 * DAY
    receipt = store.save(Hit(1, p, old))
    store.drain(timeout=30)
    written = write_time(receipt.write_id)

    # Then the event-time count has it three days ago, the write-time count now
    assert (
        store.count(
            Hit, "hit_events", since=floor(old, HOUR), until=floor(old, HOUR) + HOUR, page=p
        )
        == 1
    )
    assert (
        store.count(Hit, "hit_saves", since=floor(old, HOUR), until=floor(old, HOUR) + HOUR, page=p)
        == 0
    )
    assert store.count(Hit, "hit_saves", since=floor(written, MINUTE), page=p) == 1
    assert store.count(Hit, "hit_events", since=floor(written, HOUR), page=p) == 0


def test_replays_count_once_and_a_resave_replaces_an_identified_object(
    store: pio.Persistio,
) -> None:
    # Given one hit planned three times: saved, then saved again heavier (same object), and a
    # second, distinct save of a new hit
    p = page()
    at = floor(datetime.now(UTC), HOUR) - HOUR
    first = planned_writes(store, Hit(1, p, at, weight=2))
    second = planned_writes(store, Hit(1, p, at, weight=5))
    other = planned_writes(store, Hit(2, p, at, weight=1))

    # When every write is applied three times, in a random order (spool replays, redeliveries)
    works = (first + second + other) * 3
    random.Random(7).shuffle(works)
    for work in works:
        replay(store, [work])
    store.drain(timeout=30)

    # Then each save counts once: three saves for the save count, two objects (the newer
    # version of hit 1) for the event count
    since, until = at, at + HOUR
    assert store.count(Hit, "hit_events", since=since, until=until, page=p) == 5 + 1
    assert store.count(Hit, "hit_saves", since=since - DAY, until=until + DAY, page=p) == 2 + 5 + 1

    # When hit 1 is uncounted (what delete will do), and its old saves are replayed again
    for work in planned_uncount(store, Hit(1, p, at, weight=5)):
        replay(store, [work])
    for work in first + second:
        replay(store, [work])
    store.drain(timeout=30)

    # Then it stays uncounted; counts by save are left as they are (a save happened)
    assert store.count(Hit, "hit_events", since=since, until=until, page=p) == 1
    assert store.count(Hit, "hit_saves", since=since - DAY, until=until + DAY, page=p) == 8


def test_a_tie_of_timestamps_goes_to_the_larger_write_id(store: pio.Persistio) -> None:
    # Given two versions of one hit stamped with one timestamp by two processes
    at = floor(datetime.now(UTC), HOUR) - HOUR
    ts = (datetime.now(UTC) - EPOCH) // timedelta(microseconds=1)
    small, large = "01000000-0000-7000-8000-000000000000", "01ffffff-ffff-7fff-bfff-ffffffffffff"
    for first, second in ((small, large), (large, small)):
        p = page()
        lighter = planned_writes(store, Hit(1, p, at, weight=2), write_id=first, ts=ts)
        heavier = planned_writes(store, Hit(1, p, at, weight=7), write_id=second, ts=ts)

        # When they arrive in either order
        for work in lighter + heavier:
            replay(store, [work])

        # Then the version with the larger write id is the one counted, as in every store
        expected = 2 if first == large else 7
        assert store.count(Hit, "hit_events", since=at, until=at + HOUR, page=p) == expected


def test_a_retry_with_an_idempotency_key_counts_once(store: pio.Persistio) -> None:
    # Given a client that saves a hit, then retries the save with the same idempotency key
    p = page()
    now = datetime.now(UTC)
    first = store.save(Hit(1, p, now), idempotency_key=f"hit-{p}")
    second = store.save(Hit(1, p, now), idempotency_key=f"hit-{p}")
    store.drain(timeout=30)

    # Then it is one save: one write id, counted once even by the count of saves
    assert first.write_id == second.write_id
    since = floor(write_time(first.write_id), MINUTE)
    assert store.count(Hit, "hit_saves", since=since, page=p) == 1


def test_realtime_float_weights_and_other_key_kinds(store: pio.Persistio) -> None:
    # Given REALTIME float-weighted hits, and hits keyed by a UUID and a datetime
    user = uuid.uuid4()
    opened = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    at = floor(datetime.now(UTC), HOUR)
    before = store.count(Hit, "hit_seconds", since=floor(datetime.now(UTC), DAY))
    receipt = store.save(Hit(1, page(), at, seconds=0.25, user=user, opened=opened))
    store.save(Hit(2, page(), at, seconds=0.5, user=user, opened=opened))

    # Then the REALTIME count is there when save returns
    assert "hit_seconds" in receipt.done
    after = store.count(Hit, "hit_seconds", since=floor(datetime.now(UTC), DAY))
    assert isinstance(after, float)
    assert after - before == pytest.approx(0.75)

    # And counts keyed by a UUID and an exact datetime read back by those values
    store.drain(timeout=30)
    assert store.count(Hit, "hit_users", since=at, user=user, opened=opened) == 2
    assert (
        store.count(
            Hit, "hit_users", since=at, user=user, opened=opened + timedelta(microseconds=1)
        )
        == 0
    )


def test_a_bucket_past_its_retain_is_never_written(
    store: pio.Persistio, backend_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # Given one-second buckets kept one second, and a blip from a minute ago
    p = page()
    now = datetime.now(UTC)
    store.save(Blip(p, now - MINUTE))

    # Then it is not counted and nothing was written for it
    assert store.count(Blip, "blip_counts", since=now - 2 * MINUTE, page=p) == 0
    assert held(request, backend_kind, tmp_path, "blip_counts", p).rows == 0


def test_status_shows_the_rollup_lag_until_everything_is_folded(store: pio.Persistio) -> None:
    # Given counted saves, run by the workers
    p = page()
    store.save_many([Hit(i, p, datetime.now(UTC)) for i in range(20)])
    store.drain(timeout=30)

    # Then a backend that folds later shows what waits, and how long the oldest has waited
    lag = store.status()["counts"]
    if lag["fold_queue"]:
        assert lag["oldest_unfolded_s"] is not None

    # And once it has folded, nothing waits and nothing failed
    wait_for_folds(store)
    counts = store.status()["counts"]
    assert (counts["fold_queue"], counts["oldest_unfolded_s"], counts["fold_errors"]) == (
        0,
        None,
        0,
    )
    assert store.count(Hit, "hit_events", since=datetime.now(UTC) - HOUR, page=p) == 20


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.count(Versioned, "lww_docs", since=datetime.now(UTC), k="a"), "not a Count"),
        (lambda s: s.get(Hit, "hit_events", page="a"), "is a Count: read it with store.count"),
        (lambda s: s.query(Hit, "hit_events", page="a"), "is a Count"),
        (lambda s: s.count(Hit, "hit_events", since=datetime.now(UTC)), "key fields"),
        (
            lambda s: s.count(Hit, "hit_events", since=datetime.now(UTC), page="a", x=1),
            "key fields",
        ),
        (lambda s: s.count(Hit, "hit_events", since="yesterday", page="a"), "since='yesterday'"),
        (
            lambda s: s.count(Hit, "hit_events", since=datetime.now(UTC), until=EPOCH, page="a"),
            "is after until",
        ),
        (
            lambda s: s.counts(Hit, "hit_events", since=EPOCH, page="a", granularity=HOUR / 2),
            "declared bucket sizes",
        ),
        (lambda s: s.counts(Hit, "hit_events", since=EPOCH, page="a"), "more than 10000 buckets"),
        (lambda s: s.count(Hit, "hit_saves", since=EPOCH, page="a"), "more than 10000 buckets"),
    ],
)
def test_bad_count_reads_raise_validation_error(
    store: pio.Persistio, call: object, message: str
) -> None:
    with pytest.raises(pio.ValidationError, match=message):
        call(store)  # type: ignore[operator]


def write_time(write_id: str) -> datetime:
    """A write id is a UUIDv7: its first 48 bits are the write time in milliseconds."""
    return EPOCH + timedelta(milliseconds=int(write_id.replace("-", "")[:12], 16))
