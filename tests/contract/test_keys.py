"""Key normalization: values the stores treat as equal are one key in every store, and naive
datetimes (which the tiers would read back differently) are refused at save."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import msgspec
import pytest

import persistio as pio


@pio.persist(
    pio.Volatile("keys_price_now", key=("price",), ttl=timedelta(hours=1)),
    pio.Acid("keys_prices", key=("price",)),
    pio.Amorphous("keys_price_docs", partition=("price",)),
)
class Priced(msgspec.Struct, frozen=True):
    price: Decimal
    label: str


@pio.persist(
    pio.Volatile("keys_moment_now", key=("at",), ttl=timedelta(hours=1)),
    pio.Acid("keys_moments", key=("at",)),
    pio.Amorphous("keys_moment_docs", partition=("at",)),
)
class Moment(msgspec.Struct, frozen=True):
    at: datetime
    label: str


INTENTS = ("keys_price_now", "keys_prices", "keys_price_docs")


def test_equal_decimals_are_one_key_in_every_store(store: pio.Persistio) -> None:
    # Given a value saved under 1.0
    store.save(Priced(Decimal("1.0"), "first"))

    # When the same number, written 1.00, is saved
    store.save(Priced(Decimal("1.00"), "second"))
    store.drain(timeout=30)

    # Then every store holds one value under that key, the newer, and reads find it by any form
    for intent in INTENTS:
        for form in ("1", "1.0", "1.000"):
            found = store.get(Priced, intent, price=Decimal(form))
            assert found is not None, (intent, form)
            assert found.label == "second", (intent, form)


def test_one_instant_is_one_key_whatever_its_offset(store: pio.Persistio) -> None:
    utc = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    paris = utc.astimezone(timezone(timedelta(hours=1)))
    store.save(Moment(utc, "utc"))
    store.save(Moment(paris, "paris"))
    store.drain(timeout=30)
    for intent in ("keys_moment_now", "keys_moments", "keys_moment_docs"):
        found = store.get(Moment, intent, at=utc)
        assert found is not None, intent
        assert found.label == "paris", intent


def test_a_naive_datetime_is_refused_before_anything_is_written(store: pio.Persistio) -> None:
    naive = datetime(2026, 11, 26, 12, 0)
    with pytest.raises(pio.ValidationError, match="field 'at' is a naive datetime"):
        store.save(Moment(naive, "naive"))
    assert store.get(Moment, "keys_moment_now", at=naive.replace(tzinfo=UTC)) is None
