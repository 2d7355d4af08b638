"""Given an Amorphous identity that cannot tell objects apart, @persist warns or refuses."""

from __future__ import annotations

import uuid
import warnings
from datetime import UTC, datetime

import msgspec
import pytest

import persistio as pio


class Event(msgspec.Struct, frozen=True):
    id: uuid.UUID
    user_id: int
    at: datetime


def test_an_identity_without_an_identifying_field_warns() -> None:
    with pytest.warns(pio.KeyCollisionWarning, match=r"order=\('at', 'id'\)"):
        pio.persist(pio.Amorphous("coll_warned", partition=("user_id",), order=("at",)))(
            type("Warned", (Event,), {})
        )


def test_strict_refuses_it() -> None:
    with pytest.raises(pio.IntentError, match=r"partition \+ order .* is the row's identity"):
        pio.persist(
            pio.Amorphous("coll_strict", partition=("user_id",), order=("at",)), strict=True
        )(type("Strict", (Event,), {}))


def test_the_acid_key_counts_as_identifying() -> None:
    class Order(msgspec.Struct, frozen=True):
        order_no: int
        shop: int
        at: datetime

    with pytest.warns(pio.KeyCollisionWarning, match="order_no"):
        pio.persist(
            pio.Acid("coll_orders", key=("order_no",)),
            pio.Amorphous("coll_order_log", partition=("shop",), order=("at",)),
        )(Order)


def test_an_identity_with_the_id_is_quiet() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pio.persist(
            pio.Amorphous("coll_quiet", partition=("user_id",), order=("at", "id")), strict=True
        )(type("Quiet", (Event,), {}))


@pio.persist(pio.Amorphous("coll_events", partition=("user_id",), order=("at", "id")), strict=True)
class Logged(msgspec.Struct, frozen=True):
    id: uuid.UUID
    user_id: int
    at: datetime


def test_objects_of_one_instant_are_all_kept(store: pio.Persistio) -> None:
    # Given 300 events of one user saved within one instant (the newcomer's collision)
    at = datetime.now(UTC)
    user = uuid.uuid4().int % 10**9
    saved = [Logged(uuid.uuid4(), user, at) for _ in range(300)]
    store.save_many(saved)
    store.drain(timeout=60)

    # Then every one of them is a row of its own
    rows = store.query(Logged, "coll_events", user_id=user, limit=1000)
    assert len(rows) == 300
    assert {r.id for r in rows} == {s.id for s in saved}
