"""Time slices in the Prometheus metrics: each deferred intent's promise, the share its workers
kept, and the tasks on time, as status() has them (embedded store)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import msgspec
from prometheus_client import CollectorRegistry

import persistio as pio
from persistio import metrics


@pio.persist(
    pio.Amorphous("pm_feed", partition=("id",), within=timedelta(seconds=5)),
    pio.Amorphous("pm_raw", partition=("id",), priority=pio.LOW, within=timedelta(minutes=10)),
)
class PromiseMetered(msgspec.Struct, frozen=True):
    id: int


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
    }


def test_promises_show_in_the_metrics_as_in_status(tmp_path: Path) -> None:
    # Given a store with its metrics registered, and 12 saves of two deferred intents
    with pio.Persistio(data_dir=tmp_path, models=[PromiseMetered]) as store:
        store.setup()
        registry = CollectorRegistry()
        metrics.register(store, registry)
        for n in range(12):
            store.save(PromiseMetered(n))
        # When a worker applies them
        while store.step():
            pass
        status = store.status()["promises"]
        found = _samples(registry)

    # Then each intent's promise, kept share and tasks on time are those of status()
    for intent, priority, within in (("pm_feed", "normal", 5.0), ("pm_raw", "low", 600.0)):
        labels = (("intent", intent), ("priority", priority))
        assert found[("persistio_promise_within_seconds", labels)] == within
        assert status[intent]["total_on_time"] == 12
        on_time = found[("persistio_promise_on_time_total", (("intent", intent),))]
        assert on_time == status[intent]["total_on_time"]
        assert found[("persistio_promise_late_total", (("intent", intent),))] == 0
        assert found[("persistio_promise_within_share", (("intent", intent),))] == 1.0
