"""Partitioned streams: names that spread over the Redis Cluster slot space, stable picks."""

from __future__ import annotations

import redis.crc
from hypothesis import given
from hypothesis import strategies as st

from persistio.model.partitions import SLOTS, partition_names, pick, slot


def test_one_partition_keeps_the_plain_name() -> None:
    # Given an intent or queue with one partition; Then its stream keeps today's name
    assert partition_names("notify_friends", 1) == ("notify_friends",)
    assert partition_names("game.tasks.high", 1) == ("game.tasks.high",)


@given(
    base=st.sampled_from(["notify_friends", "tasks.high", "app.tasks.low", "a", "x_1"]),
    count=st.integers(min_value=2, max_value=64),
)
def test_partition_i_of_n_hashes_into_the_ith_nth_of_the_slots(base: str, count: int) -> None:
    # When N partitions are named
    names = partition_names(base, count)
    # Then they are distinct, start with the base name and partition index, and partition i's
    # slot (as Redis computes it for the key pio:{<name>}) is in the i-th N-th of the slots,
    # so N = k x masters puts k partitions on each master of an evenly split cluster
    assert len(set(names)) == count
    for i, name in enumerate(names):
        assert name.startswith(f"{base}.{i}")
        assert slot(name) == redis.crc.key_slot(f"pio:{{{name}}}".encode())
        assert i * SLOTS // count <= slot(name) < (i + 1) * SLOTS // count
    # And every process finds the same names
    assert partition_names(base, count) == names


def test_three_partitions_land_on_three_masters_of_a_default_cluster() -> None:
    # Given the slot ranges redis-cli --cluster create gives 3 masters
    ranges = [(0, 5460), (5461, 10922), (10923, 16383)]
    names = partition_names("tasks.normal", 3)
    # Then each master holds one partition
    owners = [next(m for m, (lo, hi) in enumerate(ranges) if lo <= slot(n) <= hi) for n in names]
    assert sorted(owners) == [0, 1, 2]


@given(text=st.text(), count=st.integers(min_value=1, max_value=256))
def test_pick_is_stable_and_in_range(text: str, count: int) -> None:
    assert 0 <= pick(text, count) < count
    assert pick(text, count) == pick(text, count)


def test_pick_spreads_write_ids() -> None:
    # Given many keys; Then each of 8 partitions gets a fair share
    counts = [0] * 8
    for n in range(8000):
        counts[pick(f"01a2-{n}:intent", 8)] += 1
    assert min(counts) > 800
