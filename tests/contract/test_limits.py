"""Refuse early what a store would refuse late: a value PostgreSQL or Cassandra would refuse is
refused by save() before anything is written, naming the field, the intent and the limit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec
import pytest

import persistio as pio


@pio.persist(
    pio.Volatile("lim_now", key=("id",), ttl=timedelta(hours=1)),
    pio.Acid("lim_rows", key=("id", "code")),
)
class LimRow(msgspec.Struct, frozen=True):
    id: int
    code: str
    note: str
    extra: dict[str, Any] | None = None


@pio.persist(
    pio.Volatile("lim_doc_now", key=("id",), ttl=timedelta(hours=1)),
    pio.Amorphous("lim_docs", partition=("tag",), order=("n", "id")),
)
class LimDoc(msgspec.Struct, frozen=True):
    id: int
    tag: str
    n: int


@pytest.mark.parametrize(
    ("obj", "field", "limit"),
    [
        (LimRow(1, "a", "nul\x00inside"), "note", "NUL"),
        (LimRow(2, "x" * 3000, "long key"), "code", "2600"),
        (LimRow(3, "b", "nan", {"score": float("nan")}), "extra", "nan"),
        (LimRow(4, "c", "inf", {"deep": [1.0, float("inf")]}), "extra", "inf"),
        (LimRow(2**63, "d", "big"), "id", "64-bit"),
        (LimDoc(5, "t" * 70_000, 1), "tag", "65535"),
        (LimDoc(6, "t", 2**63), "n", "bigint"),
    ],
)
def test_a_value_the_store_would_refuse_is_refused_before_anything_is_written(
    store: pio.Persistio, obj: Any, field: str, limit: str
) -> None:
    # When an object holding such a value is saved
    with pytest.raises(pio.ValidationError) as caught:
        store.save(obj)

    # Then the error names the field, the intent and the limit
    message = str(caught.value)
    assert f"field {field!r}" in message
    assert "intent 'lim_" in message
    assert limit in message
    # And nothing was written, not even the intents a store would have taken
    model = type(obj)
    volatile = "lim_now" if model is LimRow else "lim_doc_now"
    assert store.get(model, volatile, id=obj.id) is None


def test_values_within_the_limits_are_written(store: pio.Persistio) -> None:
    ok = LimRow(7, "y" * 2000, "fine", {"score": 1.5, "tags": ["a", "b"]})
    assert store.save(ok).done == ("lim_now", "lim_rows")
    assert store.get(LimRow, "lim_rows", id=7, code="y" * 2000) == ok
