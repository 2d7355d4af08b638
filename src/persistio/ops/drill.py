"""Outage drills: open a tier's circuit on purpose, keep saving, close it, check convergence.

``persistio drill module:store --tier amorphous --seconds 30`` runs one against a real deployment.
The drill touches nothing of the application's: it runs a store of its own on the same servers,
covering only its own model (intents named ``pio_drill_*``, declared when the first drill runs,
not when this module is imported), in the namespace ``pio_drill`` (tables, streams, keys and
task queues of its own, so its worker takes only the drill's tasks), with a spool of its own
(in a temporary directory) and circuit breakers of its own (the one it opens is not the
application's). It reads every acknowledged save back afterwards.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
import uuid
import warnings
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

import msgspec

from persistio.api.store import Persistio
from persistio.errors import BackendUnavailable, DrainTimeout, KeyCollisionWarning, ValidationError
from persistio.model.declare import persist
from persistio.model.intents import Acid, Amorphous, Tier, Transitory, Volatile


class DrillEvent(msgspec.Struct, frozen=True):
    id: uuid.UUID
    run: str
    seq: int


_declared = threading.Lock()
# the drill's tables, streams, keys and task queues: beside the application's, never shared
DRILL_NAMESPACE = "pio_drill"


def _declare() -> None:
    """Give DrillEvent its intents, once, when a drill first runs."""
    with _declared:
        if "__persistio_plan__" in DrillEvent.__dict__:
            return
        with warnings.catch_warnings():
            # seq counts a run's events, so (run, seq) does identify each one
            warnings.simplefilter("ignore", KeyCollisionWarning)
            persist(
                Transitory("pio_drill_events"),
                Volatile("pio_drill_cache", key=("id",), ttl=timedelta(minutes=30)),
                Acid("pio_drill_rows", key=("id",)),
                Amorphous(
                    "pio_drill_docs", partition=("run",), order=("seq",), retain=timedelta(days=1)
                ),
            )(DrillEvent)


@dataclass
class DrillReport:
    tier: str
    seconds: float
    attempted: int = 0
    acked: int = 0
    refused: int = 0  # saves that raised (on_outage="fail"): not acknowledged, so not lost
    buffered: int = 0
    dropped: int = 0
    replayed: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    converge_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def text(self) -> str:
        verdict = "OK: nothing lost" if self.ok else "FAILED"
        return (
            f"drill on {self.tier} for {self.seconds:.0f}s: {self.attempted} saves, "
            f"{self.acked} acked, {self.refused} refused, {self.buffered} buffered, "
            f"{self.dropped} dropped, {self.replayed} replayed, {self.delivered} delivered; "
            f"lost {self.lost}, duplicated {self.duplicated}; converged in "
            f"{self.converge_seconds:.1f}s -> {verdict}"
        )


def run_drill(
    store: Persistio, tier: str, seconds: float, *, rate: float = 100.0, timeout: float = 300.0
) -> DrillReport:
    """Open ``tier``'s circuit for ``seconds`` while saving at about ``rate`` saves/s."""
    if tier not in {t.value for t in Tier}:
        raise ValidationError(
            f"run_drill(tier={tier!r}): use one of {', '.join(t.value for t in Tier)}"
        )
    if not isinstance(seconds, int | float) or seconds <= 0 or rate <= 0:
        raise ValidationError(f"run_drill(seconds={seconds!r}, rate={rate!r}): use values > 0")
    _declare()
    run = uuid.uuid4().hex[:12]
    with tempfile.TemporaryDirectory(prefix="persistio-drill-") as data_dir:
        urls = store.urls
        drill = Persistio(
            transitory=urls[Tier.TRANSITORY],
            volatile=urls[Tier.VOLATILE],
            acid=urls[Tier.ACID],
            amorphous=urls[Tier.AMORPHOUS],
            data_dir=data_dir,
            namespace=DRILL_NAMESPACE,
            models=[DrillEvent],
            timeouts=store.settings.timeouts,
            pools=store.settings.pools,
            breaker=store.settings.breaker,
        )
        with drill:
            return _drill(drill, Tier(tier), seconds, rate, timeout, run)


def _drill(
    store: Persistio, chosen: Tier, seconds: float, rate: float, timeout: float, run: str
) -> DrillReport:
    report = DrillReport(chosen.value, seconds)
    delivered: Counter[uuid.UUID] = Counter()
    store.consumer("pio_drill_events", batch=200)(lambda e: delivered.update([e.id]))
    store.setup()
    before = store.status()
    acked: list[tuple[DrillEvent, set[str]]] = []
    breaker = store._router.stores.breakers[chosen]
    breaker.force_open()
    # a worker runs meanwhile, so deferred tasks meet the open circuit too (and are spooled)
    worker = threading.Thread(target=store.run_worker, name="persistio-drill-worker", daemon=True)
    worker.start()
    try:
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            event = DrillEvent(uuid.uuid4(), run, report.attempted)
            report.attempted += 1
            try:
                receipt = store.save(event)
            except BackendUnavailable:
                report.refused += 1
            else:
                report.dropped += len(receipt.dropped)
                acked.append((event, set(receipt.dropped)))
            time.sleep(max(0.0, report.attempted / rate - (time.monotonic() - started)))
    finally:
        store.stop_worker()
        worker.join(timeout=60)
        breaker.force_close()
    report.acked = len(acked)
    t0 = time.monotonic()
    with contextlib.suppress(DrainTimeout):  # what did not converge is counted as lost below
        store.drain(timeout=timeout)
    report.converge_seconds = time.monotonic() - t0
    after = store.status()
    report.buffered = after["buffered"] - before["buffered"]  # by saves and by the worker
    report.replayed = after["replayed"] - before["replayed"]
    report.delivered = sum(delivered.values())
    report.duplicated = sum(n - 1 for n in delivered.values() if n > 1)
    report.lost = sum(1 for event, dropped in acked if _missing(store, event, dropped, delivered))
    return report


def _missing(
    store: Persistio, event: DrillEvent, dropped: set[str], delivered: Counter[uuid.UUID]
) -> bool:
    """Is any non-dropped intent of an acknowledged save absent from its store?"""
    reads: dict[str, dict[str, Any]] = {
        "pio_drill_rows": {"id": event.id},
        "pio_drill_docs": {"run": event.run, "seq": event.seq},
        "pio_drill_cache": {"id": event.id},
    }
    for name, key in reads.items():
        if name not in dropped and store.get(DrillEvent, name, **key) != event:
            return True
    return "pio_drill_events" not in dropped and delivered[event.id] == 0
