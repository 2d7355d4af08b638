"""Prometheus metrics on the real servers: a worker process serves them over HTTP, an app
registers them on its own registry, and an outage shows in them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import persistio as pio
from persistio import metrics
from tests import redis_clients
from tests.conftest import keyspace_url, psycopg_conninfo

from .conftest import PrivateRedis
from .metrics_app import Metered

REPO = Path(__file__).resolve().parents[2]
METRICS_REDIS_DB = 10  # this suite's own Redis database, flushed first
SAVES = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(port: int) -> tuple[str, Samples]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, found


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def _registry_samples(registry: CollectorRegistry) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
    }


@pytest.fixture
def env(
    redis_url: str,
    pg_database_url: str,
    cassandra_url: str,
    cassandra_keyspace: str,
    tmp_path: Path,
) -> dict[str, str]:
    redis_db = redis_clients.with_db(redis_url, METRICS_REDIS_DB)
    redis_clients.flush(redis_db)
    return {
        "PERSISTIO_TRANSITORY_URL": redis_db,
        "PERSISTIO_VOLATILE_URL": redis_db,
        "PERSISTIO_ACID_URL": pg_database_url,
        "PERSISTIO_AMORPHOUS_URL": keyspace_url(cassandra_url, cassandra_keyspace),
    }


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[], tuple[int, Any]]]:
    """Starts `persistio worker ... --metrics-port` in a process of its own."""
    started: list[subprocess.Popen[str]] = []

    def start() -> tuple[int, subprocess.Popen[str]]:
        port = _free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "persistio.cli",
                "worker",
                "tests.integration.metrics_app:make_store",
                "--metrics-port",
                str(port),
                "--metrics-addr",
                "127.0.0.1",
            ],
            env={
                **os.environ,
                **env,
                "PYTHONPATH": str(REPO),
                "PERSISTIO_DATA_DIR": str(tmp_path / "worker"),
            },
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        return port, proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


@pytest.mark.slow
def test_a_worker_serves_its_metrics_over_http(
    env: dict[str, str],
    worker: Callable[[], tuple[int, subprocess.Popen[str]]],
    tmp_path: Path,
    raw_cassandra: Any,
    cassandra_keyspace: str,
) -> None:
    run = uuid.uuid4().hex[:8]
    # Given an app's store, its metrics registered on the app's own registry
    registry = CollectorRegistry()
    store = pio.Persistio(
        transitory=env["PERSISTIO_TRANSITORY_URL"],
        volatile=env["PERSISTIO_VOLATILE_URL"],
        acid=env["PERSISTIO_ACID_URL"],
        amorphous=env["PERSISTIO_AMORPHOUS_URL"],
        data_dir=tmp_path / "app",
    )
    app_metrics = metrics.register(store, registry)
    store.setup()

    # And a worker process serving its metrics on a port
    port, proc = worker()
    text, before = _first_scrape(port, proc)
    for tier in ("transitory", "volatile", "acid", "amorphous"):
        assert _value(before, "persistio_backend_up", tier=tier) == 1.0, text
        assert _value(before, "persistio_circuit_state", tier=tier, state="closed") == 1.0

    # When the app saves objects whose acid and amorphous writes are deferred
    for n in range(SAVES):
        assert store.save(Metered(n, run)).deferred == ("metered_rows", "metered_docs")

    # Then the worker applies them, and its scrape shows the lag of each, per priority
    text, after = _scrape_when_applied(port, proc)
    assert _value(after, "persistio_queue_pending", priority="high") == 0.0
    assert _value(after, "persistio_queue_pending", priority="normal") == 0.0
    assert _value(after, "persistio_queue_oldest_age_seconds", priority="normal") == 0.0
    assert _value(after, "persistio_spool_items") == 0.0
    lag_sum = _value(after, "persistio_deferred_lag_seconds_sum", priority="high")
    assert lag_sum is not None
    assert 0.0 < lag_sum < SAVES * 120
    bucket = _value(after, "persistio_deferred_lag_seconds_bucket", priority="high", le="+Inf")
    assert bucket == SAVES
    shown = ("lag_seconds_count", "lag_seconds_sum", "queue_pending", "backend_up", "spool_items")
    print(
        "scrape excerpt:\n"
        + "\n".join(ln for ln in text.splitlines() if any(w in ln for w in shown))
    )

    # And the rows are really in the stores
    import psycopg

    with psycopg.connect(psycopg_conninfo(env["PERSISTIO_ACID_URL"])) as conn:
        rows = conn.execute("SELECT count(*) FROM metered_rows").fetchone()
    assert rows == (SAVES,)
    raw_cassandra.set_keyspace(cassandra_keyspace)
    docs = raw_cassandra.execute("SELECT count(*) FROM metered_docs WHERE run = %s", [run]).one()
    assert docs[0] == SAVES

    # And the app's registry counted its saves, their outcomes per intent and their ack latency
    _check_app_metrics(_registry_samples(registry))

    # And the worker stops cleanly on SIGTERM, its metrics server with it
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    with pytest.raises(urllib.error.URLError):
        _scrape(port)
    app_metrics.close()
    store.close()


def _first_scrape(port: int, proc: subprocess.Popen[str]) -> tuple[str, Samples]:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, f"the worker died: {proc.communicate()[1][-3000:]}"
        try:
            return _scrape(port)
        except OSError:
            assert time.monotonic() < deadline, "the worker never served /metrics"
            time.sleep(0.2)


def _scrape_when_applied(port: int, proc: subprocess.Popen[str]) -> tuple[str, Samples]:
    deadline = time.monotonic() + 120
    while True:
        text, after = _scrape(port)
        high = _value(after, "persistio_deferred_lag_seconds_count", priority="high") or 0
        normal = _value(after, "persistio_deferred_lag_seconds_count", priority="normal") or 0
        if high == SAVES and normal == SAVES:
            return text, after
        assert time.monotonic() < deadline, f"deferred writes not applied: {high}, {normal}"
        assert proc.poll() is None, f"the worker died: {proc.communicate()[1][-3000:]}"
        time.sleep(0.3)


def _check_app_metrics(mine: Samples) -> None:
    model = "tests.integration.metrics_app:Metered"
    assert _value(mine, "persistio_saves_total", model=model) == SAVES
    assert _value(mine, "persistio_save_seconds_count", model=model) == SAVES
    assert (_value(mine, "persistio_save_seconds_sum", model=model) or 0) > 0
    done = _value(
        mine, "persistio_writes_total", intent="metered_now", tier="volatile", outcome="done"
    )
    assert done == SAVES
    for intent, tier in (("metered_rows", "acid"), ("metered_docs", "amorphous")):
        labels = {"intent": intent, "tier": tier, "outcome": "deferred"}
        assert _value(mine, "persistio_writes_total", **labels) == SAVES
    # the app's store ran no worker: no lag observed there
    assert _value(mine, "persistio_deferred_lag_seconds_count", priority="high") is None


@pio.persist(
    pio.Volatile("meter_cache", key=("id",), ttl=timedelta(minutes=5)),  # on_outage="drop"
    pio.Transitory("meter_events", max_deliveries=2, retry_backoff=timedelta(milliseconds=10)),
)
class Reading(msgspec.Struct, frozen=True):
    id: int
    bad: bool = False


def test_an_outage_retries_and_dead_letters_show_in_the_metrics(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    with pio.Persistio(
        transitory=private_redis.url,
        volatile=private_redis.url,
        data_dir=tmp_path,
        realtime_deadline=0.5,
        breaker_reset=0.2,
    ) as store:
        metrics.register(store, registry)
        store.setup()

        @store.consumer("meter_events")
        def handle(r: Reading) -> None:
            if r.bad:
                raise ValueError("a reading it cannot handle")

        # Given a consumer that fails one item for good
        store.save(Reading(1, bad=True))
        store.save(Reading(2))
        store.drain(timeout=30)
        found = _registry_samples(registry)
        assert _value(found, "persistio_retries_total", stream="meter_events") == 1
        assert _value(found, "persistio_dead_lettered_total", where="meter_events") == 1
        assert _value(found, "persistio_stream_dead_letters", stream="meter_events") == 1
        assert _value(found, "persistio_dead_letters") == 1

        # When Redis stops: the volatile write is dropped, the stream entry spooled
        private_redis.stop()
        receipts = [store.save(Reading(n)) for n in range(10, 15)]
        assert all(r.dropped == ("meter_cache",) for r in receipts)
        assert all(r.buffered == ("meter_events",) for r in receipts)
        found = _registry_samples(registry)
        assert _value(found, "persistio_backend_up", tier="transitory") == 0.0
        assert _value(found, "persistio_circuit_state", tier="transitory", state="open") == 1.0
        assert _value(found, "persistio_circuit_transitions_total", tier="transitory", to="open")
        assert _value(found, "persistio_dropped_total", intent="meter_cache", tier="volatile") == 5
        assert _value(found, "persistio_spool_items") == 5
        assert (_value(found, "persistio_spool_bytes") or 0) > 0
        assert _value(found, "persistio_spool_tier_items", tier="transitory") == 5
        assert (_value(found, "persistio_spool_oldest_age_seconds", tier="transitory") or 0) > 0
        outcomes = {
            outcome: _value(
                found, "persistio_writes_total", intent=intent, tier=tier, outcome=outcome
            )
            for intent, tier, outcome in (
                ("meter_cache", "volatile", "dropped"),
                ("meter_events", "transitory", "buffered"),
            )
        }
        assert outcomes == {"dropped": 5, "buffered": 5}

        # And Redis returns: the spool replays, the circuit closes
        private_redis.start()
        store.drain(timeout=30)
        found = _registry_samples(registry)
        assert _value(found, "persistio_spool_items") == 0.0
        assert _value(found, "persistio_replayed_total") == 5
        assert _value(found, "persistio_buffered_total") == 5
        assert _value(found, "persistio_circuit_state", tier="transitory", state="closed") == 1.0
        closed = _value(
            found, "persistio_circuit_transitions_total", tier="transitory", to="closed"
        )
        assert closed is not None
        assert closed >= 1
        # the replayed entries are really in the stream, and were consumed
        assert _value(found, "persistio_stream_pending", stream="meter_events") == 0.0
        assert redis_clients.client(private_redis.url).xlen("pio:{meter_events}") == 0


def test_metrics_register_refuses_what_is_not_a_store() -> None:
    with pytest.raises(pio.ValidationError, match="not a Persistio"):
        metrics.register(object(), CollectorRegistry())


def test_a_worker_whose_metrics_port_is_taken_says_so(tmp_path: Path) -> None:
    # Given a port another process listens on
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PERSISTIO_")}
        # When a worker (on embedded backends) is asked to serve its metrics there
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "persistio.cli",
                "worker",
                "tests.integration.metrics_app:make_store",
                "--metrics-port",
                str(port),
                "--metrics-addr",
                "127.0.0.1",
            ],
            env={**env, "PYTHONPATH": str(REPO), "PERSISTIO_DATA_DIR": str(tmp_path)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    # Then it exits at once with a usage error naming the option, not a traceback
    assert done.returncode == 2, done.stderr
    assert f"--metrics-port {port}:" in done.stderr
    assert "Traceback" not in done.stderr
