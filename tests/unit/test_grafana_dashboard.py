"""The Grafana dashboard in docs/ asks only for metrics that persistio.metrics exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

import persistio as pio
from persistio import metrics
from tests.integration.metrics_app import Metered

SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}
DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "persistio.json"


def test_every_dashboard_query_names_an_exported_metric(tmp_path: Path) -> None:
    # Given an embedded store whose metrics saw saves and deferred writes
    registry = CollectorRegistry()
    with pio.Persistio(data_dir=tmp_path) as store:
        collector = metrics.register(store, registry)
        store.setup()
        for n in range(3):
            store.save(Metered(n, "dash"))
        store.drain(timeout=30)
        sampled = {s.name for family in registry.collect() for s in family.samples}
        # every family the collector declares, also those without a sample yet (no outage)
        exported = {
            f"{f.name}{suffix}" for f in collector.describe() for suffix in SUFFIXES[f.type]
        }
    assert sampled <= exported
    assert "persistio_deferred_lag_seconds_bucket" in sampled

    # When the dashboard's queries are read
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    named = {n for e in exprs for n in re.findall(r"persistio_[a-z_]+", e)}

    # Then each metric it names is one a scrape returns
    assert len(dashboard["panels"]) >= 10
    assert named
    assert named - exported == set(), f"not exported: {sorted(named - exported)}"
