"""Given a model with intents on every tier, saves land where the intents say, exactly once."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

import persistio as pio
from tests import redis_clients
from tests.models import Address, Checkin, FeedItem, Profile


def make_profile(user_id: int, balance: str = "250.10", **changes: object) -> Profile:
    base = Profile(
        user_id=user_id,
        name="Zoë 'quoted'; DROP TABLE x; --",
        updated=datetime(2026, 11, 26, 9, 30, 1, 123456, tzinfo=timezone(timedelta(hours=-5))),
        balance=Decimal(balance),
        score=0.1 + 0.2,
        active=True,
        born=date(1990, 2, 28),
        token=uuid.uuid4(),
        avatar=b"\x00\xffpng",
        address=Address("Zürich", ["a", ""], datetime(2020, 1, 1, tzinfo=UTC)),
    )
    return pio_replace(base, **changes)


def pio_replace(obj: Profile, **changes: object) -> Profile:
    import msgspec

    return msgspec.structs.replace(obj, **changes)


def test_design_example_runs_as_written(store: pio.Persistio) -> None:
    # Given the DESIGN.md section 2 model and a consumer of its transitory intent
    delivered: list[Checkin] = []

    @store.consumer("notify_friends")
    def notify(c: Checkin) -> None:
        delivered.append(c)

    checkin = Checkin(
        uuid.uuid4(), user_id=uuid.uuid4().int % 10**9, venue_id=7, at=datetime.now(UTC)
    )

    # When it is saved
    receipt = store.save(checkin)

    # Then the real-time intents are done before save returns, and the amorphous one deferred
    assert sorted(receipt.done) == ["checkins", "here_now", "notify_friends"]
    assert receipt.deferred == ("activity",)
    assert receipt.buffered == receipt.dropped == ()
    assert store.get(Checkin, "checkins", id=checkin.id) == checkin
    assert store.get(Checkin, "here_now", venue_id=7, user_id=checkin.user_id) == checkin
    assert store.query(Checkin, "activity", user_id=checkin.user_id) == []

    # When the deferred work is drained
    store.drain(timeout=30)

    # Then the consumer saw it once and the activity feed holds it
    assert delivered == [checkin]
    assert store.query(Checkin, "activity", user_id=checkin.user_id, limit=20) == [checkin]
    status = store.status()
    assert status["streams"]["notify_friends"]["pending"] == 0
    assert all(b["healthy"] for b in status["backends"].values())


def test_every_field_kind_round_trips_exactly(store: pio.Persistio) -> None:
    # Given a profile with every column kind, including awkward strings and bytes
    profile = make_profile(uuid.uuid4().int % 10**12)

    # When it is saved and drained
    store.save(profile)
    store.drain(timeout=30)

    # Then every store returns an object equal to the one saved
    assert store.get(Profile, "profiles", user_id=profile.user_id) == profile
    assert store.get(Profile, "profile_cache", user_id=profile.user_id) == profile
    feed = store.query(Profile, "profile_feed", user_id=profile.user_id)
    assert feed == [
        FeedItem(profile.user_id, profile.updated, f"{profile.name} updated their profile")
    ]


def test_get_returns_none_when_absent(store: pio.Persistio) -> None:
    assert store.get(Checkin, "checkins", id=uuid.uuid4()) is None
    assert store.get(Checkin, "here_now", venue_id=-1, user_id=-1) is None
    when = datetime.now(UTC)
    assert store.get(Checkin, "activity", user_id=-1, at=when, id=uuid.uuid4()) is None


def test_query_is_newest_first_and_limited(store: pio.Persistio) -> None:
    # Given five check-ins of one user at increasing times
    user = uuid.uuid4().int % 10**9
    start = datetime(2026, 1, 1, tzinfo=UTC)
    checkins = [Checkin(uuid.uuid4(), user, 1, start + timedelta(minutes=i)) for i in range(5)]

    # When they are saved in a batch and drained
    receipts = store.save_many(checkins)
    store.drain(timeout=30)

    # Then one receipt per object, and the partition reads newest first, limited
    assert [r.deferred for r in receipts] == [("activity",)] * 5
    assert store.query(Checkin, "activity", user_id=user, limit=3) == checkins[::-1][:3]


def test_when_and_project_decide_what_is_stored(store: pio.Persistio) -> None:
    # Given a poor profile (balance <= 100: the audit intent's when= says no)
    poor = make_profile(uuid.uuid4().int % 10**12, balance="5")

    # When it is saved
    receipt = store.save(poor)

    # Then the audit intent is skipped and the feed stores the projection (deferred)
    assert receipt.skipped == ("profile_audit",)
    assert "profile_feed" in receipt.deferred


def test_volatile_rebuilds_from_acid_on_a_miss(make_store: Any, backend_kind: str) -> None:
    # Given a profile saved by one store
    first = make_store()
    profile = make_profile(uuid.uuid4().int % 10**12)
    first.save(profile)

    # When its volatile copy is lost (Redis: the key is deleted; embedded: the in-process map
    # belongs to the first store, so a second store starts without it)
    second = make_store()
    lose_cached_copies(second, backend_kind)

    # Then get() rebuilds it from the acid table, once, and stores the rebuilt copy again
    rebuilds: list[dict[str, Any]] = []
    second.on("rebuilding", lambda _event, fields: rebuilds.append(dict(fields)))
    assert second.get(Profile, "profile_cache", user_id=profile.user_id) == profile
    assert len(rebuilds) == 1
    assert rebuilds[0]["intent"] == "profile_cache"
    assert second.get(Profile, "profile_cache", user_id=profile.user_id) == profile
    assert len(rebuilds) == 1


def lose_cached_copies(store: pio.Persistio, backend_kind: str) -> None:
    if backend_kind == "real":
        raw = redis_clients.client(store.urls[pio.Tier.VOLATILE])
        assert raw.delete(*redis_clients.keys(raw, "pio:v:profile_cache:*")) == 1
        raw.close()


def test_a_save_racing_a_rebuild_wins_in_the_cache(make_store: Any, backend_kind: str) -> None:
    # Given a profile saved, whose cached copy is then lost
    first = make_store()
    profile = make_profile(uuid.uuid4().int % 10**12)
    first.save(profile)
    second = make_store()
    lose_cached_copies(second, backend_kind)

    # When a rebuild has read the source row and, before it fills the cache, a save of a newer
    # version completes (the hook runs at exactly that point: the race, forced)
    newer = pio_replace(profile, name="newer")
    receipts: list[pio.Receipt] = []
    second.on("rebuilding", lambda _event, _fields: receipts.append(second.save(newer)))
    rebuilt = second.get(Profile, "profile_cache", user_id=profile.user_id)

    # Then the rebuild returned what it read, but the cache holds the newer save: the rebuild
    # carried the source row's timestamp, older than the save's, so it lost
    assert rebuilt == profile
    assert "profile_cache" in receipts[0].done
    assert second.get(Profile, "profile_cache", user_id=profile.user_id) == newer
    assert second.get(Profile, "profiles", user_id=profile.user_id) == newer


def test_bad_objects_are_rejected_before_anything_is_written(store: pio.Persistio) -> None:
    # Given a check-in whose user_id is a string, and a profile with a huge int for bigint
    bad = Checkin(uuid.uuid4(), "seven", 1, datetime.now(UTC))  # type: ignore[arg-type]
    good = Checkin(uuid.uuid4(), 1, 1, datetime.now(UTC))

    # When they are saved (alone, or in a batch with a good one)
    with pytest.raises(pio.ValidationError, match=r"user_id"):
        store.save(bad)
    with pytest.raises(pio.ValidationError, match=r"save_many\[1\]\(Checkin\)"):
        store.save_many([good, bad])
    with pytest.raises(pio.ValidationError, match=r"64-bit"):
        store.save(make_profile(2**63 + 5))
    with pytest.raises(pio.ValidationError, match=r"serialize ints"):
        store.save(make_profile(2**70))

    # Then nothing of the batch was written
    assert store.get(Checkin, "checkins", id=good.id) is None
    assert store.status()["queues"]["normal"]["pending"] == 0


def test_key_arguments_are_checked(store: pio.Persistio) -> None:
    with pytest.raises(pio.ValidationError, match=r"key fields \('id',\)"):
        store.get(Checkin, "checkins", user_id=1)
    with pytest.raises(pio.ValidationError, match=r"key field 'id'"):
        store.get(Checkin, "checkins", id="not-a-uuid")
    with pytest.raises(pio.ValidationError, match=r"amorphous"):
        store.query(Checkin, "checkins", id=uuid.uuid4())
    with pytest.raises(pio.ValidationError, match=r"limit"):
        store.query(Checkin, "activity", user_id=1, limit=0)
    with pytest.raises(pio.IntentError, match=r"no intent 'nope'"):
        store.get(Checkin, "nope", id=1)
    with pytest.raises(pio.ValidationError, match=r"consumers"):
        store.get(Checkin, "notify_friends", id=1)
