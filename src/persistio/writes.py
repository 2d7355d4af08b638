"""Works -> backend calls: the one place that turns a planned write into a tier's operation.

Used alike by REALTIME saves, workers running deferred tasks, spool replay and outbox dispatch,
which is what makes every path idempotent in the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from .backends.base import (
    AcidBackend,
    AcidRow,
    AcidTransaction,
    AmorphousBackend,
    AmorphousRow,
    QueueItem,
    StreamSpec,
    TableSpec,
    TransitoryBackend,
    VolatileBackend,
    VolatileEntry,
    key_text,
)
from .breaker import CircuitBreaker
from .intents import Acid, Amorphous, Priority, Tier, Transitory, Volatile
from .model import BoundIntent
from .plan import Work


def task_queues(namespace: str = "") -> dict[Priority, StreamSpec]:
    """The deferred-task streams, one per priority: ``tasks.high`` (or ``<namespace>.tasks.high``).

    A namespace keeps apps that share one transitory backend out of each other's queues.
    """
    prefix = f"{namespace}." if namespace else ""
    return {
        p: StreamSpec(f"{prefix}tasks.{p.name.lower()}", max_deliveries=10, visibility_seconds=60.0)
        for p in (Priority.HIGH, Priority.NORMAL, Priority.LOW)
    }


@dataclass(frozen=True)
class Backends:
    transitory: TransitoryBackend
    volatile: VolatileBackend
    acid: AcidBackend
    amorphous: AmorphousBackend
    breakers: dict[Tier, CircuitBreaker] = field(
        default_factory=lambda: {t: CircuitBreaker(t.value) for t in Tier}
    )
    # intents whose table/stream this process has created (or found): see prepare()
    ready: set[tuple[Tier, str]] = field(default_factory=set)
    queues: dict[Priority, StreamSpec] = field(default_factory=task_queues)
    # tiers whose every call is bounded by the REALTIME deadline on its own (socket or request
    # timeouts, or a local file): the router may run one of their writes on the calling thread
    self_bounded: frozenset[Tier] = frozenset()

    def guard(self, tier: Tier) -> AbstractContextManager[None]:
        """Every backend call goes through its tier's circuit breaker."""
        return self.breakers[tier].guard()

    def close(self) -> None:
        for backend in (self.transitory, self.volatile, self.acid, self.amorphous):
            backend.close()


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def stream_spec(bound: BoundIntent) -> StreamSpec:
    intent = bound.intent
    assert isinstance(intent, Transitory)
    return StreamSpec(
        intent.name,
        max_deliveries=intent.max_deliveries,
        visibility_seconds=intent.visibility.total_seconds(),
        max_age_seconds=_seconds(intent.max_age),
        retry_backoff_seconds=intent.retry_backoff.total_seconds(),
    )


def table_spec(bound: BoundIntent) -> TableSpec:
    intent = bound.intent
    if isinstance(intent, Acid):
        return TableSpec(intent.name, tuple(bound.codec.columns), intent.key)
    assert isinstance(intent, Amorphous)
    by_name = {c.name: c for c in bound.codec.columns}
    keyed = tuple(by_name[n] for n in (*intent.partition, *intent.order))
    retain = intent.retain
    return TableSpec(
        intent.name,
        keyed,
        intent.partition,
        intent.order,
        ttl_seconds=None if retain is None else int(retain.total_seconds()),
        consistency=intent.consistency,
    )


def group_by_intent(works: Iterable[Work]) -> dict[BoundIntent, list[Work]]:
    groups: dict[BoundIntent, list[Work]] = {}
    for work in works:
        groups.setdefault(work.bound, []).append(work)
    return groups


def apply(backends: Backends, bound: BoundIntent, works: Sequence[Work]) -> None:
    """Write ``works`` (all of one intent) to that intent's backend, as one batch."""
    with backends.guard(bound.tier):
        prepare(backends, bound)
        _apply(backends, bound, works)


def prepare(backends: Backends, bound: BoundIntent) -> None:
    """Create the intent's table or stream the first time this process touches it.

    This is what lets a save, a worker or a spool replay succeed on a backend that was down when
    the model was first seen: setup happens with the first write that reaches it.
    """
    if (bound.tier, bound.name) in backends.ready:
        return
    match bound.tier:
        case Tier.TRANSITORY:
            backends.transitory.setup([stream_spec(bound)])
        case Tier.ACID:
            backends.acid.setup([table_spec(bound)])
        case Tier.AMORPHOUS:
            backends.amorphous.setup([table_spec(bound)])
        case Tier.VOLATILE:
            pass  # keys need no schema
    backends.ready.add((bound.tier, bound.name))


def _apply(backends: Backends, bound: BoundIntent, works: Sequence[Work]) -> None:
    match bound.tier:
        case Tier.TRANSITORY:
            items = [QueueItem(w.task.write_id, w.task.payload) for w in works]
            backends.transitory.enqueue(stream_spec(bound), items)
        case Tier.VOLATILE:
            backends.volatile.put(bound.name, volatile_entries(bound, works))
        case Tier.ACID:
            backends.acid.upsert(table_spec(bound), acid_rows(bound, works))
        case Tier.AMORPHOUS:
            backends.amorphous.write(table_spec(bound), amorphous_rows(bound, works))


def apply_in_transaction(
    backends: Backends, tx: AcidTransaction, bound: BoundIntent, works: Sequence[Work]
) -> None:
    prepare(backends, bound)
    tx.upsert(table_spec(bound), acid_rows(bound, works))


def volatile_entries(bound: BoundIntent, works: Sequence[Work]) -> list[VolatileEntry]:
    intent = bound.intent
    assert isinstance(intent, Volatile)
    assert intent.ttl is not None
    ttl_us = int(intent.ttl.total_seconds() * 1_000_000)
    return [
        VolatileEntry(key_of(bound, w.obj), w.task.ts, w.task.ts + ttl_us, w.task.payload)
        for w in works
    ]


def acid_rows(bound: BoundIntent, works: Sequence[Work]) -> list[AcidRow]:
    return [AcidRow(bound.codec.to_row(w.obj), w.task.ts) for w in works]


def amorphous_rows(bound: BoundIntent, works: Sequence[Work]) -> list[AmorphousRow]:
    fields = bound.key
    return [
        AmorphousRow(bound.codec.key_values(w.obj, fields), w.task.payload, w.task.ts)
        for w in works
    ]


def key_of(bound: BoundIntent, obj: Any) -> str:
    return key_text(bound.codec.key_values(obj, bound.key))
