"""Striped in-process locks, so several worker threads can share one consumer safely.

The notifier and the badge engine read-modify-write per-key state (an inbox, a ledger, a venue's
mayor). persistio resolves concurrent writes last-write-wins and offers no compare-and-set, so
two threads updating one key at once would lose an update. Within one process these locks
serialize the threads per key; across processes, run one worker per consumer (README, Limits).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager


class KeyLocks:
    """``with locks.hold(("user", 7), ("venue", 3)):`` -- a fixed set of stripes, taken in
    ascending order whatever order the keys come in, so two holders can never deadlock."""

    def __init__(self, stripes: int = 256) -> None:
        self._stripes = [threading.Lock() for _ in range(stripes)]

    @contextmanager
    def hold(self, *keys: Hashable) -> Iterator[None]:
        taken = [self._stripes[i] for i in sorted({hash(k) % len(self._stripes) for k in keys})]
        for lock in taken:
            lock.acquire()
        try:
            yield
        finally:
            for lock in reversed(taken):
                lock.release()
