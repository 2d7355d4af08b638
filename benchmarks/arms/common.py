"""What the hand-written arms share: write timestamps and the poll interval."""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable
from typing import TypeVar

# Idle workers poll at persistio's run_worker default, so no arm is faster just by polling more.
POLL_SECONDS = 0.05
NOTIFY_BATCH = 64  # persistio's consumer batch
TASK_BATCH = 256  # persistio's worker_batch

T = TypeVar("T")


class Clock:
    """Microsecond write timestamps, strictly increasing within the process.

    The last-write-wins guards compare these, exactly as persistio's do, so a replayed write
    can never overwrite a newer one.
    """

    def __init__(self) -> None:
        self._last = 0

    def take(self, n: int) -> list[int]:
        now = time.time_ns() // 1000
        first = now if now > self._last else self._last + 1
        self._last = first + n - 1
        return list(range(first, first + n))


def newest(keyed: Iterable[tuple[Hashable, tuple[T, int]]]) -> list[tuple[T, int]]:
    """One (item, write ts) per key, the newest: one statement may not touch a row twice."""
    out: dict[Hashable, tuple[T, int]] = {}
    for key, (item, ts) in keyed:
        held = out.get(key)
        if held is None or held[1] < ts:
            out[key] = (item, ts)
    return list(out.values())
