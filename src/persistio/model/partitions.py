"""Partitioned streams: one transitory intent (or task queue) spread over N streams.

A stream's keys all carry its name as their Redis Cluster hash tag (``pio:{<name>}``), so one
stream lives on one master. N partitions are N streams whose names hash to N different parts of
the 16,384 slots: partition ``i`` of ``N`` is named so that its slot falls in the ``i``-th
N-th of the slot space, which ``redis-cli --cluster create`` hands out to the masters in
contiguous, equal ranges. So N = a multiple of the number of masters puts the same number of
partitions on each master; names that were merely hashed would often pile onto one.

Names are ``<name>.<i>`` when that name's slot already falls in its range, else
``<name>.<i>.<j>`` for the first ``j`` that does; they depend only on the name, ``i`` and ``N``,
so every process finds the same ones. With one partition a stream keeps its plain name, so
existing data stays readable. Changing N renames the partitions: drain a stream first.

Which partition an entry goes to is a stable hash of what must stay in order (the intent's
``order_by`` fields) or, failing that, of its write id: the same write always goes to the same
partition, so a replay meets its own deduplication marker.
"""

from __future__ import annotations

import binascii
import zlib

SLOTS = 16_384  # Redis Cluster's hash slots


def slot(tag: str) -> int:
    """The Redis Cluster hash slot of a hash tag (CRC16/XMODEM, as Redis computes it)."""
    return binascii.crc_hqx(tag.encode(), 0) % SLOTS


def partition_names(base: str, count: int) -> tuple[str, ...]:
    """The stream names of ``count`` partitions of ``base``; ``(base,)`` for one."""
    if count == 1:
        return (base,)
    names: list[str] = []
    for i in range(count):
        low, high = i * SLOTS // count, (i + 1) * SLOTS // count
        j = 0
        while True:
            name = f"{base}.{i}" if j == 0 else f"{base}.{i}.{j}"
            if low <= slot(name) < high:
                break
            j += 1
        names.append(name)
    return tuple(names)


def pick(text: str, count: int) -> int:
    """The partition of an entry keyed by ``text``: stable across processes and runs."""
    return zlib.crc32(text.encode()) % count


__all__ = ["SLOTS", "partition_names", "pick", "slot"]
