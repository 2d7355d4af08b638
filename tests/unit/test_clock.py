"""Property tests of the write clock: a hybrid logical clock under any wall clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from persistio.model.clock import WriteClock

SKEW = 5_000_000  # us

steps = st.lists(
    st.one_of(
        st.tuples(st.just("wall"), st.integers(-10_000_000, 10_000_000)),  # a step, back or on
        st.tuples(st.just("next"), st.just(0)),
        st.tuples(st.just("observe"), st.integers(-20_000_000, 20_000_000)),  # ahead of wall by
    ),
    max_size=60,
)


@given(steps=steps)
def test_stamps_increase_and_follow_what_was_seen_within_the_skew(
    steps: list[tuple[str, int]],
) -> None:
    wall = [1_800_000_000_000_000]
    clock = WriteClock(max_skew_us=SKEW, wall=lambda: wall[0])
    issued: list[int] = []
    floor = 0  # every stamp must be above this: what was issued or followed so far
    ignored = 0
    for kind, value in steps:
        if kind == "wall":
            wall[0] += value
        elif kind == "next":
            ts = clock.next()
            assert ts > floor
            assert ts >= wall[0]
            issued.append(ts)
            floor = ts
        else:
            seen = wall[0] + value
            high = clock.high
            followed = clock.observe(seen)
            # followed unless further ahead of this host's wall clock than the max skew (a stamp
            # the clock has already passed needs no following, whatever the wall clock says)
            assert followed == (seen <= wall[0] + SKEW or seen <= high)
            if followed:
                floor = max(floor, seen)
            else:
                ignored += 1
        assert clock.high >= floor
    assert issued == sorted(set(issued))  # unique and increasing, whatever the wall clock did
    assert clock.ignored == ignored


def test_write_ids_sort_by_their_timestamps() -> None:
    stamps = [1_800_000_000_000_000 + n * 997 for n in range(200)]
    ids = [WriteClock.write_id(ts) for ts in stamps]
    assert sorted(ids) == ids
