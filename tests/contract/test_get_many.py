"""Given keyed intents on every tier, get_many reads many keys at once, aligned with them."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import persistio as pio
from tests.models import Oddity, Profile

from .test_save_and_read import make_profile


def oddity(name: str, n: int) -> Oddity:
    return Oddity(name, n, text=f"{name}/{n}", blob=bytes([n % 256]), extra={"n": [n]})


@pytest.mark.parametrize("intent", ["odd_rows", "odd_cache", "odd_docs"])
def test_get_many_is_aligned_with_the_keys_and_none_where_missing(
    store: pio.Persistio, intent: str
) -> None:
    # Given objects with composite keys full of hostile characters, saved on every tier
    prefix = f"k'{{}};:%{uuid.uuid4().hex[:8]}"
    saved = [oddity(f"{prefix}-{i}", i) for i in range(5)]
    store.save_many(saved)
    store.drain(timeout=30)

    # When many keys are read at once: out of order, one missing, one asked twice
    keys: list[dict[str, Any]] = [
        {"name": saved[3].name, "n": 3},
        {"name": f"{prefix}-absent", "n": 9},
        {"name": saved[0].name, "n": 0},
        {"name": saved[3].name, "n": 3},
        {"name": saved[1].name, "n": 2},  # a name that exists with another n
    ]
    found = store.get_many(Oddity, intent, keys)

    # Then the answer lines up with the keys, equal to what was saved, None where missing
    assert found == [saved[3], None, saved[0], saved[3], None]
    # and it agrees with one get() per key
    assert found == [store.get(Oddity, intent, **k) for k in keys]


def test_get_many_of_no_keys_is_empty(store: pio.Persistio) -> None:
    assert store.get_many(Oddity, "odd_rows", []) == []


def test_get_many_reads_many_keys_past_one_statement(store: pio.Persistio) -> None:
    # Given more rows than one IN list holds (statements are chunked)
    prefix = uuid.uuid4().hex[:8]
    saved = [oddity(prefix, i) for i in range(2_500)]
    store.save_many(saved)

    # When all of them and as many absent keys are read
    keys = [{"name": prefix, "n": i} for i in range(5_000)]
    found = store.get_many(Oddity, "odd_rows", keys)

    # Then every saved one is found, in order, and the rest are None
    assert found == [*saved, *([None] * 2_500)]


def test_get_many_rebuilds_volatile_misses_from_their_source(store: pio.Persistio) -> None:
    # Given profiles whose cache rebuilds from the acid row, and one cache entry already there
    base = uuid.uuid4().int % 10**9
    profiles = [make_profile(base + i) for i in range(3)]
    store.save_many(profiles)
    store.drain(timeout=30)

    # When the cache is read for them and for a user who does not exist
    keys = [{"user_id": base + i} for i in range(4)]
    found = store.get_many(Profile, "profile_cache", keys)

    # Then each present profile is found (read through from acid), the absent one is None
    assert found == [*profiles, None]


def test_get_many_refuses_bad_keys_naming_the_position(store: pio.Persistio) -> None:
    with pytest.raises(pio.ValidationError, match=r"keys\[1\].*exactly the key fields"):
        store.get_many(Oddity, "odd_rows", [{"name": "a", "n": 1}, {"name": "a"}])
    with pytest.raises(pio.ValidationError, match=r"keys\[0\] must be a dict"):
        store.get_many(Oddity, "odd_rows", [("a", 1)])  # type: ignore[list-item]
    with pytest.raises(pio.ValidationError, match="keys must be a list"):
        store.get_many(Oddity, "odd_rows", {"name": "a", "n": 1})  # type: ignore[arg-type]
    with pytest.raises(pio.ValidationError, match="consumers"):
        store.get_many(Oddity, "odd_events", [{"name": "a", "n": 1}])
