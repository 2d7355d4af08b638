"""Metrics and tracing attached to one store at once: each sees every save, and each can be
detached without the other (embedded backends)."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

import persistio as pio
from persistio import metrics, tracing
from tests.integration.metrics_app import Metered

MODEL = "tests.integration.metrics_app:Metered"


def _saves(registry: CollectorRegistry) -> float:
    for family in registry.collect():
        for s in family.samples:
            if s.name == "persistio_saves_total" and s.labels == {"model": MODEL}:
                return s.value
    return 0.0


def test_metrics_and_tracing_stack_and_detach_apart(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = CollectorRegistry()
    with pio.Persistio(data_dir=tmp_path) as store:
        store.setup()
        # Given both probes on one store
        collector = metrics.register(store, registry)
        stop_tracing = tracing.instrument(store, tracer_provider=provider)

        # When it saves and a worker applies the deferred writes
        receipt = store.save(Metered(1, "both"))
        store.drain(timeout=30)

        # Then the metrics counted the save and the deferred lag, and the spans are there,
        # the deferred writes linked to the save
        assert _saves(registry) == 1
        spans = exporter.get_finished_spans()
        (save,) = [s for s in spans if s.name == f"persistio.save {MODEL}"]
        assert save.context is not None
        deferred = [s for s in spans if s.name.startswith("persistio.deferred ")]
        assert sorted(s.name for s in deferred) == [
            "persistio.deferred metered_docs",
            "persistio.deferred metered_rows",
        ]
        for span in deferred:
            assert [ln.context.span_id for ln in span.links] == [save.context.span_id]
            assert span.attributes is not None
            assert span.attributes["persistio.write_id"] == receipt.write_id
        lags = [
            s.value
            for f in registry.collect()
            for s in f.samples
            if s.name == "persistio_deferred_lag_seconds_count"
        ]
        assert sorted(lags) == [1.0, 1.0]  # high and normal

        # When tracing is detached: no more spans, the metrics go on
        stop_tracing()
        exporter.clear()
        store.save(Metered(2, "both"))
        assert exporter.get_finished_spans() == ()
        assert _saves(registry) == 2

        # And when the metrics are closed too, the store saves as before, unobserved
        collector.close()
        store.save(Metered(3, "both"))
        assert _saves(registry) == 2
        assert store.get(Metered, "metered_now", n=3) == Metered(3, "both")
