"""Given a mistake a newcomer makes, the error names the object, the option or the fix."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest

import persistio as pio
from tests.models import Account


def test_save_many_names_the_failing_objects_index(store: pio.Persistio) -> None:
    # Given a batch whose fourth object does not fit its model
    base = uuid.uuid4().int % 10**9
    batch: list[Any] = [Account(base + i, "ann", i) for i in range(5)]
    batch[3] = Account(base + 3, "ann", "not a number")  # type: ignore[arg-type]

    # When it is saved, then the error names the index and the model
    with pytest.raises(pio.ValidationError, match=r"save_many\[3\]\(Account\)"):
        store.save_many(batch)

    # And nothing of the batch was written
    assert [store.get(Account, "accounts", id=base + i) for i in range(5)] == [None] * 5
    assert store.status()["streams"]["account_events"]["pending"] == 0


def test_save_many_names_an_object_that_is_not_a_model(store: pio.Persistio) -> None:
    base = uuid.uuid4().int % 10**9
    with pytest.raises(pio.IntentError, match=r"save_many\[1\].*not a persisted model"):
        store.save_many([Account(base, "a", 1), {"id": 2}])
    assert store.get(Account, "accounts", id=base) is None


class Point(msgspec.Struct, frozen=True):
    id: int


def test_an_unknown_option_lists_only_the_user_facing_ones() -> None:
    with pytest.raises(pio.IntentError) as caught:
        pio.persist(pio.Acid("pointed_acid", key=("id",), indx=("id",)))(Point)
    text = str(caught.value)
    assert "does not fit an Acid intent (did you mean 'index'?" in text
    assert "it takes: key, index, priority, on_outage, project, when" in text
    for internal in ("tier", "default_priority", "default_on_outage", "unknown_options"):
        assert internal not in text.split("it takes:")[1]


def test_an_unknown_option_suggests_the_closest() -> None:
    with pytest.raises(pio.IntentError, match=r"an Amorphous intent \(did you mean 'order'\?"):
        pio.persist(pio.Amorphous("pointed_docs", partition=("id",), oder=("id",)))(Point)


def test_persist_applied_twice_is_refused() -> None:
    with pytest.raises(pio.IntentError, match=r"already decorated with @persist.*one @persist"):

        @pio.persist(pio.Acid("pointed_outer", key=("id",)))
        @pio.persist(pio.Acid("pointed_inner", key=("id",)))
        class _Twice(msgspec.Struct, frozen=True):
            id: int
