"""What the hand-written arms share: write timestamps and the poll interval."""

from __future__ import annotations

import time

# Idle workers poll at persistio's run_worker default, so no arm is faster just by polling more.
POLL_SECONDS = 0.05
NOTIFY_BATCH = 64  # persistio's consumer batch
TASK_BATCH = 256  # persistio's worker_batch


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
