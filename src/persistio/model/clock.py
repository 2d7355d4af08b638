"""The write clock: a hybrid logical clock, so a later save wins even where clocks disagree.

A write's timestamp is the larger of the wall clock and one more than the largest timestamp this
process has seen: its own writes, the stamps it reads back from the stores, and a high-water mark
shared through the spool file (a restart after the host's clock stepped back) and the transitory
store (the other hosts). Timestamps never go back in a process, and a save made after another
process's save that it could know of is stamped later, whatever the two hosts' clocks say.

A stamp further ahead of this host's wall clock than ``max_skew`` is not followed: one host with
a badly wrong clock (or a corrupt value) would otherwise drag every process's clock, and with it
every TTL, along. It is counted (``status()["clock"]["ignored"]``); writes ordered against it may
then be superseded, and their receipts say so.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

WriteTime = Callable[[], int]


class WriteClock:
    """Microsecond write timestamps, unique and increasing per process, and UUIDv7 write ids."""

    def __init__(self, max_skew_us: int = 300_000_000, wall: WriteTime | None = None) -> None:
        self._lock = threading.Lock()
        self._last = 0
        self._wall = wall or _wall_us
        self.max_skew_us = max_skew_us
        self.ignored = 0  # stamps too far ahead to follow
        self.followed = 0  # stamps ahead of the wall clock that moved this clock on

    def next(self) -> int:
        now = self._wall()
        with self._lock:
            self._last = now if now > self._last else self._last + 1
            return self._last

    @property
    def high(self) -> int:
        """The largest timestamp issued or seen so far."""
        return self._last

    def observe(self, ts: int) -> bool:
        """Take a timestamp seen in a store into account; False if it is too far ahead to."""
        if ts <= self._last:  # the common case, decided without the lock
            return True
        now = self._wall()
        with self._lock:
            if ts > now + self.max_skew_us:
                self.ignored += 1
                return False
            if ts > self._last:
                self._last = ts
                if ts > now:
                    self.followed += 1
        return True

    @staticmethod
    def write_id(ts_us: int) -> str:
        """A UUIDv7 (RFC 9562) whose 12 sub-millisecond bits come from ``ts_us``: time-ordered."""
        ms, sub_us = divmod(ts_us, 1000)
        rand_a = (sub_us * 4096) // 1000
        rand_b = int.from_bytes(os.urandom(8)) & ((1 << 62) - 1)
        value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
        h = f"{value:032x}"  # uuid.UUID's str() would take three times as long
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _wall_us() -> int:
    return time.time_ns() // 1000
