"""Property: hostile strings and extreme numbers are stored and read back as data, everywhere."""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import persistio as pio
from tests.models import Oddity

# Text the way users type it, plus the characters that break naive SQL, CQL and key builders.
hostile = st.one_of(
    st.sampled_from(
        [
            "",
            "'",
            '"',
            ";",
            "'; DROP TABLE odd_rows; --",
            "{tag}",
            "a:b",
            "%",
            "\\",
            "ünïcødé ✓ 🚀",
            "\x01",
            " ",
            "NULL",
        ]
    ),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        max_size=40,
    ),
)
bigint = st.integers(-(2**63), 2**63 - 1)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=hostile,
    n=bigint,
    text=hostile,
    blob=st.binary(max_size=64),
    extra=st.dictionaries(hostile, st.lists(bigint, max_size=3), max_size=3),
)
def test_hostile_values_round_trip_in_every_store(
    store: pio.Persistio,
    name: str,
    n: int,
    text: str,
    blob: bytes,
    extra: dict[str, list[int]],
) -> None:
    # Given an object whose key and fields are hostile (made unique per example)
    name = f"{name}{uuid.uuid4().hex[:6]}"
    odd = Oddity(name, n, text, blob, extra)

    # When it is saved and drained
    store.save(odd)
    delivered: list[Oddity] = []
    store.consumer("odd_events", replace=True)(delivered.append)  # once per example
    store.drain(timeout=30)

    # Then every store returns it unchanged, and the consumer got it once
    assert store.get(Oddity, "odd_rows", name=name, n=n) == odd
    assert store.get(Oddity, "odd_cache", name=name, n=n) == odd
    assert store.get(Oddity, "odd_docs", name=name, n=n) == odd
    assert store.query(Oddity, "odd_docs", name=name) == [odd]
    assert delivered == [odd]
