"""Load for the fault tests: paced saver threads, the ledger of every save, spool sampling.

Everything here stops by itself: saver threads have a hard time limit besides their stop event.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import persistio as pio

ACKED_STATES = ("done", "deferred", "buffered")

StoreFactory = Callable[..., pio.Persistio]  # the make_store fixture: Persistio(**options)


@dataclass(frozen=True)
class Entry:
    """One save: acked (with its receipt) or raised (with the exception's type and message)."""

    n: int
    model: str
    phase: str  # the one in which save() returned
    started: float  # time.monotonic()
    latency: float  # seconds save() took
    receipt: pio.Receipt | None
    error: BaseException | None

    def has(self, intent: str, states: Sequence[str] = ACKED_STATES) -> bool:
        r = self.receipt
        return r is not None and any(intent in getattr(r, s) for s in states)


class Ledger:
    """Every save of a test, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[Entry] = []

    def record(self, entry: Entry) -> None:
        with self._lock:
            self._entries.append(entry)

    @property
    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._entries)

    def acked(self, intent: str, states: Sequence[str] = ACKED_STATES) -> set[int]:
        """The objects whose receipt puts ``intent`` in one of ``states``."""
        return {e.n for e in self.entries if e.has(intent, states)}

    def raised(self, model: type | None = None) -> set[int]:
        return {
            e.n
            for e in self.entries
            if e.error is not None and (model is None or e.model == model.__name__)
        }

    def errors(self) -> list[BaseException]:
        return [e.error for e in self.entries if e.error is not None]

    def in_phase(self, phase: str) -> list[Entry]:
        return [e for e in self.entries if e.phase == phase]

    def max_latency(self, phase: str | None = None) -> float:
        """The longest save in ``phase``, or in any phase but the warm-up (schema creation)."""
        return max(
            (
                e.latency
                for e in self.entries
                if e.phase == phase or (phase is None and e.phase != "warmup")
            ),
            default=0.0,
        )


class Phases:
    """The test's current phase ("warmup", "normal", "fault", "recovery") and each one's span."""

    def __init__(self, first: str = "warmup") -> None:
        self._lock = threading.Lock()
        self.current = first
        self.spans: dict[str, list[float]] = {first: [time.monotonic(), 0.0]}

    def enter(self, name: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.spans[self.current][1] = now
            self.current = name
            self.spans[name] = [now, 0.0]

    def end(self) -> None:
        with self._lock:
            self.spans[self.current][1] = time.monotonic()

    def duration(self, name: str) -> float:
        start, stop = self.spans[name]
        return max(1e-9, (stop or time.monotonic()) - start)


@dataclass
class Load:
    """Saver threads, one per maker, each at ``rate`` saves/s, until ``stop()`` or ``limit`` s.

    Object numbers come from one counter, so they are unique across threads and models.
    """

    store: pio.Persistio
    ledger: Ledger
    phases: Phases
    makers: Sequence[Callable[[int], Any]]
    rate: float = 60.0
    limit: float = 60.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _numbers: itertools.count[int] = field(default_factory=itertools.count)
    _numbers_lock: threading.Lock = field(default_factory=threading.Lock)

    def warm_up(self) -> None:
        """One save per maker, in this thread: tables and streams exist before the clock runs."""
        for make in self.makers:
            self._save(make)

    def start(self) -> None:
        for i, make in enumerate(self.makers):
            t = threading.Thread(target=self._run, args=(make,), name=f"fault-saver-{i}")
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)
            assert not t.is_alive(), f"{t.name} did not stop"

    def _next(self) -> int:
        with self._numbers_lock:
            return next(self._numbers)

    def _save(self, make: Callable[[int], Any]) -> None:
        obj = make(self._next())
        t0 = time.monotonic()
        receipt: pio.Receipt | None = None
        error: BaseException | None = None
        try:
            receipt = self.store.save(obj)
        except Exception as exc:  # recorded, and judged by the test
            error = exc
        latency = time.monotonic() - t0
        phase = self.phases.current  # a save counts in the phase in which it returned
        self.ledger.record(Entry(obj.n, type(obj).__name__, phase, t0, latency, receipt, error))

    def _run(self, make: Callable[[int], Any]) -> None:
        period = 1.0 / self.rate
        start = time.monotonic()
        tick = start
        while not self._stop.is_set() and time.monotonic() - start < self.limit:
            self._save(make)
            tick = max(tick + period, time.monotonic() - period)  # no catch-up bursts
            self._stop.wait(max(0.0, tick - time.monotonic()))


# --------------------------------------------------------------------- spool ----


@dataclass(frozen=True)
class SpoolSample:
    at: float  # time.monotonic()
    by_tier: dict[str, int]  # tasks spooled per tier
    buffered: int  # counters: ever spooled, ever replayed
    replayed: int

    @property
    def depth(self) -> int:
        return sum(self.by_tier.values())


def read_spool(path: Path) -> SpoolSample:
    """Depth per tier and counters, read from the spool file itself (raw, read-only SQLite)."""
    at = time.monotonic()
    if not path.exists():
        return SpoolSample(at, {}, 0, 0)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT tier, count(*) FROM spooled GROUP BY tier").fetchall()
        counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
    finally:
        db.close()
    by_tier = {str(tier): int(n) for tier, n in rows}
    return SpoolSample(at, by_tier, counters.get("buffered", 0), counters.get("replayed", 0))


class SpoolWatch:
    """Samples the spool every ``interval`` s in a thread, for ingest and replay rates."""

    def __init__(self, path: Path, interval: float = 0.05) -> None:
        self.path = path
        self.interval = interval
        self.samples: list[SpoolSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-spool-watch")

    def __enter__(self) -> SpoolWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(sqlite3.Error):  # e.g. the schema is not there yet
                self.samples.append(read_spool(self.path))
            self._stop.wait(self.interval)

    def ingest_rate(self, tier: str, start: float, stop: float) -> float:
        """Tasks of ``tier`` spooled per second between two instants (its backend down)."""
        inside = [s for s in self.samples if start <= s.at <= stop]
        if len(inside) < 2:
            return 0.0
        first, last = inside[0], inside[-1]
        grown = last.by_tier.get(tier, 0) - first.by_tier.get(tier, 0)
        return grown / max(1e-9, last.at - first.at)

    def replay(self, tier: str, since: float) -> tuple[int, float, float]:
        """Once the backend is back (``since``): the peak of ``tier``'s spool, how fast it was
        replayed from that peak to empty (tasks/s), and how long after ``since`` the peak came
        (the spool keeps growing while the circuit's cool-down keeps the backend untried)."""
        after = [s for s in self.samples if s.at >= since]
        if not after:
            return 0, 0.0, 0.0
        peak = max(after, key=lambda s: s.by_tier.get(tier, 0))
        depth = peak.by_tier.get(tier, 0)
        empty = next((s for s in after if s.at > peak.at and not s.by_tier.get(tier, 0)), None)
        if depth == 0 or empty is None:
            return depth, 0.0, peak.at - since
        return depth, depth / max(self.interval, empty.at - peak.at), peak.at - since


def first_done_after(ledger: Ledger, intent: str, since: float) -> float | None:
    """Seconds from ``since`` until a save started after it wrote ``intent`` at once (its
    circuit closed again); None if none did."""
    times = [
        e.started + e.latency - since
        for e in ledger.entries
        if e.started >= since and e.has(intent, ("done",))
    ]
    return round(min(times), 2) if times else None


def phase_metrics(ledger: Ledger, phases: Phases) -> dict[str, Any]:
    """Per phase: acked saves per second, raised saves, and the longest save."""
    out: dict[str, Any] = {}
    for name in phases.spans:
        if name == "warmup":
            continue
        entries = ledger.in_phase(name)
        acked = sum(1 for e in entries if e.receipt is not None)
        out[f"{name}_ack_rate"] = round(acked / phases.duration(name), 1)
        out[f"{name}_raised"] = sum(1 for e in entries if e.error is not None)
        out[f"{name}_max_latency_s"] = round(ledger.max_latency(name), 3)
    return out


def spool_metrics(watch: SpoolWatch, phases: Phases, restored: float, tier: str) -> dict[str, Any]:
    """Tasks of ``tier`` spooled per second during the fault vs replayed per second after it."""
    start, stop = phases.spans["fault"]
    peak, rate, lag = watch.replay(tier, restored)
    return {
        "ingest_rate_tasks_s": round(watch.ingest_rate(tier, start, stop), 1),
        "replay_rate_tasks_s": round(rate, 1),
        "spool_peak_tasks": peak,
        "spool_peak_after_restore_s": round(lag, 2),
    }
