"""Time slices as promises: how late each deferred intent's work is, against its ``within``.

A deferred intent promises that its task is done ``within`` a time of its save. Workers tell
``Promises`` what they finished; it keeps, per intent,

- cumulative counts of tasks done on time and late (counters in the spool file, so every process
  on the host that shares the data dir, ``persistio status`` included, reads the same totals);
- a sliding window (``window`` seconds) of this process's lags, from which the share done within
  the promise and the lag quantiles are reported.

The lag of a task is measured from its write timestamp (the save) to the moment its write was
acknowledged by its store: the time the user waited for the effect.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from persistio.model.declare import BoundIntent
from persistio.model.intents import Priority
from persistio.model.tasks import Work
from persistio.outage.spool import Spool

KEEP = 20_000  # lags kept per intent for the window: bounds memory under any load


def _quantile(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Promises:
    """Lag against each deferred intent's ``within``, over a sliding window and in total."""

    def __init__(self, spool: Spool, window: float = 60.0) -> None:
        self.spool = spool
        self.window = window
        self._lock = threading.Lock()
        self._lags: dict[str, deque[tuple[float, float]]] = {}  # intent -> (done at, lag)

    def done(self, works: Iterable[Work], now: float | None = None) -> None:
        """Record tasks whose writes were acknowledged at ``now`` (epoch seconds)."""
        now = time.time() if now is None else now
        seen = time.monotonic()
        counts: dict[str, list[int]] = {}
        with self._lock:
            for work in works:
                within = work.bound.intent.within
                if within is None:
                    continue
                name = work.bound.name
                lag = max(0.0, now - work.task.ts / 1e6)
                kept = self._lags.get(name)
                if kept is None:
                    kept = self._lags[name] = deque(maxlen=KEEP)
                kept.append((seen, lag))
                tally = counts.setdefault(name, [0, 0])
                tally[lag > within.total_seconds()] += 1
        for name, (on_time, late) in counts.items():
            if on_time:
                self.spool.bump(f"on_time:{name}", on_time)
            if late:
                self.spool.bump(f"late:{name}", late)

    def report(
        self, intents: Sequence[BoundIntent], counters: dict[str, int]
    ) -> dict[str, dict[str, Any]]:
        """Per deferred intent: its promise, the window's share on time and lag quantiles (this
        process's workers), and the totals on time and late (every process on the host)."""
        cutoff = time.monotonic() - self.window
        found: dict[str, dict[str, Any]] = {}
        for bound in intents:
            intent = bound.intent
            if intent.within is None or bound.name in found:
                continue
            within = intent.within.total_seconds()
            with self._lock:
                kept = self._lags.get(bound.name, ())
                lags = sorted(lag for at, lag in kept if at >= cutoff)
            on_time = counters.get(f"on_time:{bound.name}", 0)
            late = counters.get(f"late:{bound.name}", 0)
            found[bound.name] = {
                "priority": Priority(intent.priority).name.lower(),
                "within_s": within,
                "on_lag": intent.on_lag,
                "window_s": self.window,
                "done": len(lags),
                "within_share": (
                    sum(1 for lag in lags if lag <= within) / len(lags) if lags else None
                ),
                "lag_p50_s": _quantile(lags, 0.5) if lags else None,
                "lag_p99_s": _quantile(lags, 0.99) if lags else None,
                "lag_max_s": lags[-1] if lags else None,
                "total_on_time": on_time,
                "total_late": late,
                "total_share": on_time / (on_time + late) if on_time + late else None,
            }
        return found

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self._lags = {}


__all__ = ["Promises"]
