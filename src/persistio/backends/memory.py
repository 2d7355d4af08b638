"""Volatile tier, embedded: an in-process map with absolute expiry and last-write-wins."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import ClassVar

from persistio.backends.base import Op, Put, refuse


class MemoryVolatile:
    """Values live in this process only; they can be lost and rebuilt, as volatile data may."""

    tiers: ClassVar[frozenset[str]] = frozenset({"volatile"})
    bounded: ClassVar[bool] = True
    concurrent: ClassVar[bool] = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[tuple[str, str], Put] = {}
        self._writes = 0

    def after_fork(self) -> None:
        self._lock = threading.Lock()  # another thread may have held it at the fork

    def write(self, ops: Sequence[Op], deadline: float | None = None) -> list[bool]:
        now_us = time.time_ns() // 1000
        written: list[bool] = []
        with self._lock:
            for op in ops:
                if type(op) is not Put:
                    raise refuse(self, op)
                slot = (op.intent, op.key)
                current = self._data.get(slot)
                if current is not None and (current.ts, current.wid) >= (op.ts, op.wid):
                    written.append(False)  # an older or replayed write never wins
                elif op.expires_at_us <= now_us:
                    # Written late (a replay): already expired, and an expired value never
                    # resurrects; a newer stored one expires later, so nothing is lost.
                    written.append(False)
                else:
                    self._data[slot] = op
                    written.append(True)
            self._writes += len(ops)
            if self._writes > 10_000:
                self._sweep(now_us)
        return written

    def get(self, intent: str, key: str) -> bytes | None:
        stamped = self.get_stamped(intent, key)
        return None if stamped is None else stamped[0]

    def get_stamped(self, intent: str, key: str) -> tuple[bytes, int] | None:
        now_us = time.time_ns() // 1000
        with self._lock:
            entry = self._data.get((intent, key))
            if entry is None or entry.expires_at_us <= now_us:
                return None
            return entry.payload, entry.ts

    def get_many_stamped(self, intent: str, keys: Sequence[str]) -> list[tuple[bytes, int] | None]:
        return [self.get_stamped(intent, key) for key in keys]

    def _sweep(self, now_us: int) -> None:
        self._writes = 0
        expired = [k for k, e in self._data.items() if e.expires_at_us <= now_us]
        for k in expired:
            del self._data[k]

    def ping(self) -> None:
        return None

    def close(self) -> None:
        with self._lock:
            self._data.clear()
