"""Where the write clock's high-water mark is kept and shared (see clock.py).

- The spool file: a process restarted after its host's clock stepped back starts above every
  timestamp it issued before.
- The transitory store, under ``pio:clock:<namespace>``: each process raises it to its own mark
  and follows it (within the clock's max skew), at ``setup()``, then about once a second on the
  replay thread while it writes, and at ``close()``. A host whose clock is behind learns of
  another's later writes within that second, or at once from any stamp it reads back.

A sync is best effort: an unreachable store is skipped (its breaker counts the failure) and the
next sync tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from persistio.events import Events
from persistio.model.clock import WriteClock
from persistio.model.intents import Tier
from persistio.outage.spool import Spool
from persistio.tiers.tier_set import Stores

log = logging.getLogger("persistio.clock")

SYNC_EVERY = 1.0  # seconds between syncs on the replay thread
REPORT_EVERY = 60.0  # seconds between reports of stamps too far ahead


class ClockSync:
    def __init__(
        self, clock: WriteClock, spool: Spool, stores: Stores, namespace: str, events: Events
    ) -> None:
        self._clock = clock
        self._spool = spool
        self._stores = stores
        self._key = namespace or "default"
        self._events = events
        self._lock = threading.Lock()
        self._kept = 0  # the mark last written to the spool
        self._next_sync = 0.0
        self.syncs = 0
        self.shared = 0  # the shared mark as last read
        self._quiet_until = 0.0
        self.follow(spool.clock_high(), "spool")

    def follow(self, ts: int, source: str) -> None:
        """Observe ``ts``, seen in ``source``; one too far ahead to follow is counted, and
        reported (logged and emitted) at most once a minute."""
        if ts and not self._clock.observe(ts):
            now = time.monotonic()
            if now < self._quiet_until:
                return
            self._quiet_until = now + REPORT_EVERY
            skew = (ts - time.time_ns() // 1000) / 1e6
            self._events.emit("clock_ignored", source=source, ahead_seconds=round(skew, 3))

    def sync(self) -> None:
        """Keep the mark in the spool, raise the shared one to it and follow that."""
        with self._lock:
            high = self._clock.high
            if high > self._kept:
                self._spool.keep_clock(high)
                self._kept = high
            try:
                with self._stores.guard(Tier.TRANSITORY):
                    self.shared = self._stores.transitory.advance(self._key, high)
            except Exception as exc:  # an outage: the next sync tries again
                log.debug("clock sync skipped: %s", exc)
                return
            self.syncs += 1
        self.follow(self.shared, "transitory")

    def tick(self) -> None:
        """Called on the replay thread about once a second: shares the mark when it moved
        (a process that writes nothing never calls out; setup() and reads keep it current)."""
        now = time.monotonic()
        if now >= self._next_sync and self.moved:
            self._next_sync = now + SYNC_EVERY
            self.sync()

    @property
    def moved(self) -> bool:
        """Stamps issued or seen since the last sync."""
        return self._clock.high > self._kept

    def status(self) -> dict[str, Any]:
        return {
            "high": self._clock.high,
            "shared": self.shared,
            "syncs": self.syncs,
            "followed": self._clock.followed,
            "ignored": self._clock.ignored,
            "max_skew_seconds": self._clock.max_skew_us / 1e6,
        }
