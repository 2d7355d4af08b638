"""Backpressure and load: what a save does when its intent's promise cannot be kept.

A background tick (every ``refresh`` seconds, on a daemon thread started by the first deferred
save) reads each priority queue's depth and oldest age, and the workers' counts of tasks served
and seconds busy (spool counters, shared by every process on the host). From two such samples it
knows, per priority:

- ``lateness``: the larger of the oldest pending task's age and the wait a task enqueued now
  should expect (depth / recent service rate): how late the queue's work is running;
- the arrival rate, the service rate of one worker thread, and how many workers the load needs.

A save only reads ``hot`` (one attribute) unless some queue is past the bound of an intent that
said ``on_lag="slow"`` or ``"shed"``: the bound is ``factor * within``. Past it, ``slow`` makes
the save wait (at most ``max_wait`` seconds) for the queue to come back under the bound, then
go on; ``shed`` drops the intent's new task. Each is counted per intent (``slowed:<intent>``,
``shed:<intent>``) and shown in ``status()``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from persistio.model.declare import REGISTRY, Plan
from persistio.model.intents import Priority, Tier
from persistio.model.tasks import Work
from persistio.outage.spool import Spool
from persistio.tiers.tier_set import Stores

log = logging.getLogger("persistio.pressure")
RATE_WINDOW = 2.0  # seconds the service rate behind lateness is measured over (a worker
# process on the host flushes its counters once a second)
LOAD_WINDOW = 10.0  # seconds of samples the rates in status() are measured over


class Sample(NamedTuple):
    at: float  # monotonic seconds
    pending: dict[Priority, int]
    oldest: dict[Priority, float | None]
    served: dict[Priority, int]  # cumulative, every worker on the host
    busy: dict[Priority, float]  # cumulative worker-thread seconds spent on tasks


class Pressure:
    """Cached queue lateness for saves; arrival and service rates for ``status()``."""

    def __init__(
        self,
        stores: Stores,
        spool: Spool,
        *,
        factor: float,
        max_wait: float,
        refresh: float,
        plans: Callable[[], list[Plan]] = REGISTRY.plans,
    ) -> None:
        self.stores = stores
        self.plans = plans  # the models whose intents may slow or shed saves
        self.spool = spool
        self.factor = factor
        self.max_wait = max_wait
        self.refresh = refresh
        self.hot = False  # some queue is past a slow/shed intent's bound: saves must look
        self.running = False
        self.lateness: dict[Priority, float] = {}
        self._bounds: dict[Priority, float] = {}  # smallest slow/shed bound per priority
        self._rates: dict[Priority, float] = {}  # tasks/s served per priority, lately
        self._samples: deque[Sample] = deque()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._changed = threading.Condition()

    # -- the tick -------------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self.running or self._stopped.is_set():
                return
            self.running = True
        threading.Thread(target=self._run, name="persistio-pressure", daemon=True).start()

    def _run(self) -> None:
        while not self._stopped.wait(self.refresh):
            try:
                self.tick()
            except Exception as exc:  # a transitory outage: saves go to the spool meanwhile
                log.debug("pressure tick: %s", exc)
                self.hot = False

    def sample(self) -> Sample:
        """Read the queues and the workers' counters now."""
        t = self.stores.transitory
        pending: dict[Priority, int] = {}
        oldest: dict[Priority, float | None] = {}
        with self.stores.guard(Tier.TRANSITORY):
            for priority, queue in self.stores.queues.items():
                found = [t.stats(spec) for spec in queue]
                ages = [s.oldest_age_seconds for s in found if s.oldest_age_seconds is not None]
                pending[priority] = sum(s.pending for s in found)
                oldest[priority] = max(ages) if ages else None
        counters = self.spool.counters()
        served = {p: counters.get(f"served:{p.name.lower()}", 0) for p in pending}
        busy = {p: counters.get(f"busy_us:{p.name.lower()}", 0) / 1e6 for p in pending}
        return Sample(time.monotonic(), pending, oldest, served, busy)

    def tick(self) -> None:
        """Sample, then say how late each queue runs and whether saves must look."""
        now = self.sample()
        with self._lock:
            self._samples.append(now)
            while len(self._samples) > 2 and now.at - self._samples[0].at > LOAD_WINDOW:
                self._samples.popleft()
            first = next(s for s in self._samples if now.at - s.at <= RATE_WINDOW)
        lateness: dict[Priority, float] = {}
        rates: dict[Priority, float] = {}
        for p, depth in now.pending.items():
            late = now.oldest[p] or 0.0
            dt = now.at - first.at
            served = now.served[p] - first.served[p]
            if dt > 0 and served > 0:
                rates[p] = served / dt
                late = max(late, depth / rates[p])  # the wait a task enqueued now expects
            lateness[p] = late
        self._bounds = self._slow_or_shed_bounds()
        self._rates = rates
        self.lateness = lateness
        # from half the bound on, saves account for what they add (see admit): between two
        # ticks, producers faster than the workers would otherwise overshoot by a whole tick
        self.hot = any(lateness.get(p, 0.0) > b / 2 for p, b in self._bounds.items())
        with self._changed:
            self._changed.notify_all()

    def _slow_or_shed_bounds(self) -> dict[Priority, float]:
        bounds: dict[Priority, float] = {}
        for plan in self.plans():
            for bound in plan.intents:
                intent = bound.intent
                if intent.on_lag == "accept" or intent.within is None:
                    continue
                limit = self.factor * intent.within.total_seconds()
                p = intent.priority
                bounds[p] = min(bounds.get(p, limit), limit)
        return bounds

    # -- saves ----------------------------------------------------------------------------------

    def over(self, work: Work) -> bool:
        intent = work.bound.intent
        if intent.on_lag == "accept" or intent.within is None:
            return False
        limit = self.factor * intent.within.total_seconds()
        return self.lateness.get(intent.priority, 0.0) > limit

    def admit(self, later: Sequence[Work]) -> list[Work]:
        """The deferred works to enqueue: shed ones are marked and counted; a slowed save
        waits for its queues (bounded by ``max_wait``), then goes on, counted."""
        kept: list[Work] = []
        shed: dict[str, int] = {}
        slowed: list[Work] = []
        for work in later:
            if not self.over(work):
                kept.append(work)
            elif work.bound.intent.on_lag == "shed":
                work.state = "shed"
                shed[work.bound.name] = shed.get(work.bound.name, 0) + 1
            else:
                slowed.append(work)
                kept.append(work)
        self._added(kept)
        for name, n in shed.items():
            self.spool.bump(f"shed:{name}", n)
        if slowed:
            self._wait(lambda: not any(self.over(w) for w in slowed))
            for work in slowed:
                self.spool.bump(f"slowed:{work.bound.name}")
        return kept

    def _added(self, works: Sequence[Work]) -> None:
        """Each admitted task makes its queue later by one task's share of the service rate
        (until the next tick measures it again)."""
        per: dict[Priority, int] = {}
        for work in works:
            p = work.bound.priority
            per[p] = per.get(p, 0) + 1
        for p, n in per.items():
            rate = self._rates.get(p)
            if rate:
                self.lateness[p] = self.lateness.get(p, 0.0) + n / rate

    def _wait(self, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.max_wait
        with self._changed:
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0 or self._stopped.is_set():
                    return
                self._changed.wait(left)

    # -- status ---------------------------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        """Per priority: depth, oldest age, lateness, arrival and service rates; and how many
        worker threads the current load needs (None until there are two samples at least 0.2 s
        apart: right after the first call in a fresh process)."""
        try:
            now = self.sample()
        except Exception as exc:
            return {"error": str(exc)}
        with self._lock:
            earlier = [s for s in self._samples if 0.2 <= now.at - s.at <= LOAD_WINDOW]
            self._samples.append(now)
            while len(self._samples) > 2 and now.at - self._samples[0].at > LOAD_WINDOW:
                self._samples.popleft()
        first = earlier[0] if earlier else None
        per: dict[str, Any] = {}
        busy_needed = 0.0
        known = first is not None
        for p in now.pending:
            figures = _rates(first, now, p)
            per[p.name.lower()] = {
                "pending": now.pending[p],
                "oldest_age_s": now.oldest[p],
                "lateness_s": self.lateness.get(p),
                **figures,
            }
            arrival, cost = figures["arrival_per_s"], figures["task_s"]
            if arrival is not None and cost is not None:
                busy_needed += arrival * cost
            elif arrival:  # work arrives and no worker has served any yet
                known = False
        return {
            "by_priority": per,
            "workers_needed": math.ceil(busy_needed) if known else None,
        }

    # -- lifecycle ------------------------------------------------------------------------------

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._samples = deque()
        self.running = False
        self.hot = False

    def stop(self) -> None:
        self._stopped.set()
        with self._changed:
            self._changed.notify_all()


def _rates(first: Sample | None, now: Sample, p: Priority) -> dict[str, float | None]:
    if first is None:
        return {"arrival_per_s": None, "served_per_s": None, "task_s": None}
    dt = now.at - first.at
    served = now.served[p] - first.served[p]
    arrived = now.pending[p] - first.pending[p] + served
    busy = now.busy[p] - first.busy[p]
    return {
        "arrival_per_s": max(0.0, arrived / dt),
        "served_per_s": served / dt,
        # seconds of one worker thread per task: 1 / the service rate of one worker
        "task_s": busy / served if served else None,
    }


__all__ = ["Pressure", "Sample"]
