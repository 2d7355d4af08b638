"""Property: saves applied in any order, any number of times, converge to last-write-wins."""

from __future__ import annotations

import random
import time
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import persistio as pio
from persistio.testing import planned_writes, replay
from tests.models import Versioned

saves = st.lists(
    st.tuples(st.integers(0, 3), st.integers(-(2**63), 2**63 - 1)), min_size=1, max_size=12
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(saves=saves, seed=st.integers(0, 2**32), repeats=st.integers(1, 3))
def test_any_order_any_repeats_converges_to_last_write(
    store: pio.Persistio, saves: list[tuple[int, int]], seed: int, repeats: int
) -> None:
    # Given saves on overlapping keys, planned in order (so write timestamps increase)
    run = uuid.uuid4().hex[:8]
    objs = [Versioned(f"{run}'k;{k}", v) for k, v in saves]
    works = [w for o in objs for w in planned_writes(store, o)] * repeats

    # When every task is applied in a random order, each possibly several times
    random.Random(seed).shuffle(works)
    for work in works:
        replay(store, [work])

    # Then each key holds its last write, in every tier
    expected = {o.k: o for o in objs}
    for key, obj in expected.items():
        assert store.get(Versioned, "lww_rows", k=key) == obj
        assert store.get(Versioned, "lww_cache", k=key) == obj
        assert store.get(Versioned, "lww_docs", k=key) == obj

    # And the stream got each save exactly once, however often it was replayed
    delivered: list[Versioned] = []
    store.consumer("lww_events", batch=100, replace=True)(delivered.append)  # per example
    store.drain(timeout=30)
    assert sorted(delivered, key=repr) == sorted(objs, key=repr)


def test_equal_timestamps_resolve_the_same_way_in_every_store(store: pio.Persistio) -> None:
    # Given two saves of one key stamped with the same microsecond by two processes
    from persistio.testing import planned_writes, replay

    ts = time.time_ns() // 1000
    small = planned_writes(
        store, Versioned("tie", 1), write_id="01a20000-0000-7000-8000-000000000001", ts=ts
    )
    large = planned_writes(
        store, Versioned("tie", 2), write_id="01a20000-0000-7000-8000-000000000002", ts=ts
    )

    # When they are applied in either order, then every store keeps the larger write id's
    for order in ([*small, *large], [*large, *small]):
        for work in order:
            replay(store, [work])
        for intent in ("lww_rows", "lww_cache", "lww_docs"):
            assert store.get(Versioned, intent, k="tie") == Versioned("tie", 2), (intent, order)
