"""A traced store for a worker process: `persistio worker tests.integration.traced_app:make_store`.

Its spans go to the JSON-lines file named by PERSISTIO_TEST_SPANS, so a test in another process
can read the worker's side of a trace.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import persistio as pio
from persistio import tracing

from .metrics_app import make_store as make_plain_store


class FileExporter(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock, open(self.path, "a", encoding="utf-8") as out:
            for s in spans:
                assert s.context is not None
                out.write(
                    json.dumps(
                        {
                            "name": s.name,
                            "trace_id": s.context.trace_id,
                            "span_id": s.context.span_id,
                            "parent": None if s.parent is None else s.parent.span_id,
                            "links": [[ln.context.trace_id, ln.context.span_id] for ln in s.links],
                            "attributes": dict(s.attributes or {}),
                        }
                    )
                    + "\n"
                )
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def make_store() -> pio.Persistio:
    store = make_plain_store()
    provider = TracerProvider()
    provider.add_span_processor(
        SimpleSpanProcessor(FileExporter(os.environ["PERSISTIO_TEST_SPANS"]))
    )
    tracing.instrument(store, tracer_provider=provider)
    return store
