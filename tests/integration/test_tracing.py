"""OpenTelemetry traces on the real servers, read from the SDK's in-memory exporter: a span per
save and per backend call, and the worker's deferred write linked to the save that queued it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import persistio as pio
from persistio import tracing
from tests import redis_clients

from .metrics_app import Metered

REPO = Path(__file__).resolve().parents[2]
TRACING_REDIS_DB = 11  # this suite's own Redis database, flushed first
MODEL = "tests.integration.metrics_app:Metered"
TRACED_APP = "tests.integration.traced_app:make_store"  # a worker whose spans go to a file


@pytest.fixture
def traced(
    real_store_urls: Callable[[int], dict[str, str]], tmp_path: Path
) -> Iterator[tuple[pio.Persistio, InMemorySpanExporter, TracerProvider]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    urls = real_store_urls(TRACING_REDIS_DB)
    with pio.Persistio(**urls, data_dir=tmp_path) as store:
        store.setup()
        stop = tracing.instrument(store, tracer_provider=provider)
        yield store, exporter, provider
        stop()


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def _parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def test_a_deferred_write_is_a_linked_span_of_the_save_that_queued_it(
    traced: tuple[pio.Persistio, InMemorySpanExporter, TracerProvider],
    redis_url: str,
) -> None:
    store, exporter, provider = traced
    run = uuid.uuid4().hex[:8]
    # Given a save made inside a request's span
    with provider.get_tracer("app").start_as_current_span("POST /metered") as request:
        receipt = store.save(Metered(1, run))
    assert receipt.deferred == ("metered_rows", "metered_docs")
    spans = list(exporter.get_finished_spans())
    save = _one(spans, f"persistio.save {MODEL}")

    # Then the save's span is a child of the request's, and says what became of each intent
    assert save.context is not None
    assert save.context.trace_id == request.get_span_context().trace_id
    assert _parent_id(save) == request.get_span_context().span_id
    assert save.attributes is not None
    assert save.attributes["persistio.write_id"] == receipt.write_id
    assert tuple(save.attributes["persistio.done"]) == ("metered_now",)  # type: ignore[arg-type]
    assert set(save.attributes["persistio.deferred"]) == {"metered_rows", "metered_docs"}  # type: ignore[arg-type]
    # And its one round trip to Redis (the volatile value and the two task enqueues) is a child
    (write,) = [s for s in spans if s.name.startswith("persistio.write")]
    assert write.name == "persistio.write transitory/volatile"
    assert write.kind is SpanKind.CLIENT
    assert _parent_id(write) == save.context.span_id
    assert write.attributes is not None
    assert write.attributes["persistio.ops"] == 3

    # And each queued task holds the save's trace context, as Redis stores it
    raw = redis_clients.client(redis_clients.with_db(redis_url, TRACING_REDIS_DB))
    entries = raw.xrange("pio:{tasks.high}") + raw.xrange("pio:{tasks.normal}")
    tasks = [msgspec.msgpack.decode(fields[b"p"]) for _, fields in entries]
    ctx = save.context
    traceparent = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
    assert [(t[2], t[-1]) for t in tasks] == [
        ("metered_rows", traceparent),
        ("metered_docs", traceparent),
    ]

    # When a worker applies the deferred writes
    exporter.clear()
    store.drain(timeout=30)
    spans = list(exporter.get_finished_spans())

    # Then each is a span of its own, linked to the save that queued it
    for intent, tier in (("metered_rows", "acid"), ("metered_docs", "amorphous")):
        deferred = _one(spans, f"persistio.deferred {intent}")
        assert [(ln.context.trace_id, ln.context.span_id) for ln in deferred.links] == [
            (save.context.trace_id, save.context.span_id)
        ]
        assert deferred.attributes is not None
        assert deferred.attributes["persistio.write_id"] == receipt.write_id
        assert deferred.attributes["persistio.tier"] == tier
        assert deferred.status.status_code is StatusCode.UNSET
        batch = next(s for s in spans if s.context and s.context.span_id == _parent_id(deferred))
        assert batch.name == "persistio.deferred"
        assert batch.kind is SpanKind.CONSUMER
        # And the backend call that wrote it is a child of the worker's batch
        assert any(
            s.name == f"persistio.write {tier}" and _parent_id(s) == batch.context.span_id  # type: ignore[union-attr]
            for s in spans
        ), [(s.name, _parent_id(s)) for s in spans]

    # And the writes are really in the stores
    assert store.get(Metered, "metered_rows", n=1) == Metered(1, run)
    assert store.query(Metered, "metered_docs", run=run) == [Metered(1, run)]


def test_a_failed_save_is_an_error_span(
    traced: tuple[pio.Persistio, InMemorySpanExporter, TracerProvider],
) -> None:
    store, exporter, _ = traced
    # When a save is refused for bad data
    with pytest.raises(pio.ValidationError):
        store.save(Metered("not an int", "x"))  # type: ignore[arg-type]
    # Then nothing was dispatched: validation comes before any span or write
    assert list(exporter.get_finished_spans()) == []


def test_an_untraced_store_writes_tasks_as_before(
    real_store_urls: Callable[[int], dict[str, str]], tmp_path: Path
) -> None:
    # Given a store that is not instrumented
    urls = real_store_urls(TRACING_REDIS_DB)
    with pio.Persistio(**urls, data_dir=tmp_path) as store:
        store.setup()
        store.save(Metered(2, "plain"))
        raw = redis_clients.client(urls["transitory"])
        (entry,) = raw.xrange("pio:{tasks.high}")
        # Then the task has its seven fields: no trace context, not even an empty one
        task: list[Any] = msgspec.msgpack.decode(entry[1][b"p"])
        assert len(task) == 7
        assert task[2] == "metered_rows"
        store.drain(timeout=30)


def test_instrument_refuses_what_is_not_a_store() -> None:
    with pytest.raises(pio.ValidationError, match="not a Persistio"):
        tracing.instrument(object())


@pytest.mark.slow
def test_a_worker_process_links_its_cassandra_write_to_the_save(
    traced: tuple[pio.Persistio, InMemorySpanExporter, TracerProvider], tmp_path: Path
) -> None:
    store, exporter, provider = traced
    run = uuid.uuid4().hex[:8]
    # Given a save made in this process, inside a request's span
    with provider.get_tracer("app").start_as_current_span("POST /metered"):
        receipt = store.save(Metered(5, run))
    save = _one(list(exporter.get_finished_spans()), f"persistio.save {MODEL}")
    assert save.context is not None

    # When a traced worker process applies its deferred writes
    spans_file = tmp_path / "worker-spans.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PERSISTIO_TRANSITORY_URL": store.urls[pio.Tier.TRANSITORY],
        "PERSISTIO_VOLATILE_URL": store.urls[pio.Tier.VOLATILE],
        "PERSISTIO_ACID_URL": store.urls[pio.Tier.ACID],
        "PERSISTIO_AMORPHOUS_URL": store.urls[pio.Tier.AMORPHOUS],
        "PERSISTIO_DATA_DIR": str(tmp_path / "worker"),
        "PERSISTIO_TEST_SPANS": str(spans_file),
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "persistio.cli",
            "worker",
            "tests.integration.traced_app:make_store",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            found = _spans_in(spans_file)
            names = {s["name"] for s in found}
            if {"persistio.deferred metered_docs", "persistio.deferred metered_rows"} <= names:
                break
            assert worker.poll() is None, worker.communicate()[1][-3000:]
            assert time.monotonic() < deadline, f"the worker made no deferred spans: {names}"
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        err = worker.communicate(timeout=60)[1]
    assert worker.returncode == 0, err[-3000:]

    # Then its span of the Cassandra write is linked to the save made here, in another process
    docs = next(s for s in found if s["name"] == "persistio.deferred metered_docs")
    assert docs["links"] == [[save.context.trace_id, save.context.span_id]]
    assert docs["attributes"]["persistio.write_id"] == receipt.write_id
    assert docs["attributes"]["persistio.tier"] == "amorphous"
    # And the Cassandra call itself is a span under the same worker batch
    batch = next(s for s in found if s["span_id"] == docs["parent"])
    assert batch["name"] == "persistio.deferred"
    assert any(
        s["name"] == "persistio.write amorphous" and s["parent"] == batch["span_id"] for s in found
    )
    # And the row is in Cassandra
    assert store.query(Metered, "metered_docs", run=run) == [Metered(5, run)]


def _spans_in(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
