"""OpenTelemetry traces of a store: ``persistio.tracing.instrument(store)``.

Needs ``persistio[otel]`` (opentelemetry-api; the application configures an SDK and its
exporter). Nothing here is imported or run unless ``instrument`` is called: a store that is not
instrumented pays nothing.

Spans:

- ``persistio.save <Model>`` (``persistio.save_many`` for several objects): one per save, a
  child of whatever span is current (the HTTP request's); its attributes are the write id and
  each intent's outcome;
- ``persistio.write <tiers>``: one per backend call (a batch sent to one server), a child of the
  save's or the worker batch's span;
- ``persistio.deferred`` / ``persistio.replayed``: a worker's batch of queued tasks (or of spool
  replays), and under it one ``persistio.deferred <intent>`` span per task, **linked** to the
  save that queued it: the save's trace context travels inside the task (its W3C
  ``traceparent``), across the queue and into another process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from persistio.errors import ConfigError
from persistio.model.tasks import traced
from persistio.write.probes import Probe, attach

if TYPE_CHECKING:
    from opentelemetry.trace import Link, Span, Tracer, TracerProvider

    from persistio.model.tasks import SavePlan, Work
    from persistio.write.probes import CallEnd, Errors, SaveCall, TasksCall
    from persistio.write.router import Receipt

OUTCOMES = ("done", "deferred", "buffered", "dropped", "superseded", "failed", "skipped")


class Tracing(Probe):
    """The probe that makes the spans; made and attached by ``instrument``."""

    def __init__(self, tracer: Tracer) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._tracer = tracer
        self._trace = trace
        self._propagator = TraceContextTextMapPropagator()

    def save(self, plans: Sequence[SavePlan], call: SaveCall) -> list[Receipt]:
        if len(plans) == 1 and plans[0].work:
            name = f"persistio.save {plans[0].work[0].task.model}"
        else:
            name = "persistio.save_many"
        with self._tracer.start_as_current_span(name, attributes={"persistio.saves": len(plans)}):
            carrier: dict[str, str] = {}
            self._propagator.inject(carrier)
            parent = carrier.get("traceparent", "")
            if parent:  # queued and spooled tasks carry the save's context to the worker
                for plan in plans:
                    for work in plan.work:
                        work.task = traced(work.task, parent)
            receipts = call(plans)
            span = self._trace.get_current_span()
            if len(receipts) == 1:
                span.set_attribute("persistio.write_id", receipts[0].write_id)
            for outcome in OUTCOMES:
                names = sorted({n for r in receipts for n in getattr(r, outcome)})
                if names:
                    span.set_attribute(f"persistio.{outcome}", names)
            return receipts

    def backend_call(self, tiers: str, ops: int) -> CallEnd | None:
        span = self._tracer.start_span(
            f"persistio.write {tiers}",
            kind=self._trace.SpanKind.CLIENT,
            attributes={"persistio.tiers": tiers, "persistio.ops": ops},
        )

        def end(error: BaseException | None) -> None:
            if error is not None:
                _failed(span, error)
            span.end()

        return end

    def tasks(self, kind: str, works: Sequence[Work], call: TasksCall) -> Errors:
        if not works:
            return call(works)
        links = [self._link(w) for w in works]
        by_span = {(ln.context.trace_id, ln.context.span_id): ln for ln in links if ln}
        distinct = list(by_span.values())
        with self._tracer.start_as_current_span(
            f"persistio.{kind}",
            kind=self._trace.SpanKind.CONSUMER,
            links=distinct,
            attributes={"persistio.tasks": len(works)},
        ):
            started = time.time_ns()
            errors = call(works)
            ended = time.time_ns()
            for work, link, error in zip(works, links, errors, strict=True):
                task = work.task
                span = self._tracer.start_span(
                    f"persistio.{kind} {task.intent}",
                    links=[] if link is None else [link],
                    start_time=started,
                    attributes={
                        "persistio.write_id": task.write_id,
                        "persistio.intent": task.intent,
                        "persistio.tier": task.tier,
                        "persistio.priority": task.priority,
                        "persistio.lag_seconds": max(0.0, (started / 1000 - task.ts) / 1e6),
                    },
                )
                if error is not None:
                    _failed(span, error)
                span.end(end_time=ended)
        return errors

    def _link(self, work: Work) -> Link | None:
        parent = getattr(work.task, "trace", "")
        if not parent:
            return None
        context = self._propagator.extract({"traceparent": parent})
        span_context = self._trace.get_current_span(context).get_span_context()
        if not span_context.is_valid:
            return None
        return self._trace.Link(span_context, {"persistio.write_id": work.task.write_id})


def _failed(span: Span, error: BaseException) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


def instrument(store: Any, tracer_provider: TracerProvider | None = None) -> Callable[[], None]:
    """Trace ``store``'s saves, backend calls and worker batches with OpenTelemetry.

    Call it where the store is made (the module a worker loads too, so the worker's deferred
    writes are traced and linked to their saves).

    Args:
        store: A ``Persistio`` or ``AsyncPersistio``.
        tracer_provider: Default: the global one (``opentelemetry.trace.set_tracer_provider``).

    Returns:
        A function that stops tracing the store.

    Raises:
        ConfigError: opentelemetry-api is not installed (``pip install 'persistio[otel]'``).
    """
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise ConfigError(
            "persistio.tracing needs opentelemetry-api: pip install 'persistio[otel]'"
        ) from exc
    from persistio import __version__

    tracer = trace.get_tracer("persistio", __version__, tracer_provider=tracer_provider)
    return attach(store, Tracing(tracer))


__all__ = ["Tracing", "instrument"]
