"""Works -> backend ops: the one place that turns a planned write into a store's operation.

Used alike by REALTIME saves, workers running deferred tasks, spool replay and outbox dispatch,
which is what makes every path idempotent in the same way: each op carries its write timestamp
and every store keeps the newest.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import msgspec

from persistio.backends.base import (
    GROUP_MARK,
    TOMBSTONE,
    Append,
    Contribution,
    CountSpec,
    Document,
    Op,
    Put,
    StreamSpec,
    TableSpec,
    Upsert,
    key_text,
)
from persistio.model.catalog import stored_name
from persistio.model.declare import BoundIntent
from persistio.model.intents import Acid, Amorphous, Priority, Tier, Transitory, Volatile
from persistio.model.partitions import partition_names, pick
from persistio.model.tasks import TASK_ENCODER, Work

Streams = tuple[StreamSpec, ...]
"""The partitions of one stream (one element when it is not partitioned)."""


def task_queues(
    namespace: str = "", partitions: int = 1, replicas: int = 0, visibility: float = 60.0
) -> dict[Priority, Streams]:
    """The deferred-task streams, one per priority (highest first): ``tasks.high`` (or
    ``<namespace>.tasks.high``), each in ``partitions`` partitions (see ``partitions.py``).

    A namespace keeps apps that share one transitory backend out of each other's queues. A task
    a worker claimed and never acknowledged (it died) is handed out again after ``visibility``
    seconds.
    """
    prefix = f"{namespace}." if namespace else ""
    return {
        p: tuple(
            StreamSpec(name, max_deliveries=10, visibility_seconds=visibility, replicas=replicas)
            for name in partition_names(f"{prefix}tasks.{p.name.lower()}", partitions)
        )
        for p in (Priority.HIGH, Priority.NORMAL, Priority.LOW)
    }


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def stream_specs(bound: BoundIntent, namespace: str = "") -> Streams:
    """Every stream of a transitory intent: one per partition, or, when it declares several
    consumers, one per consumer and partition (``<partition>~<consumer>``)."""
    intent = bound.intent
    assert isinstance(intent, Transitory)
    base = base_streams(bound, namespace)
    if not intent.consumers:
        return base
    return tuple(s for c in intent.consumers for s in group_streams(base, c))


def group_streams(base: Streams, consumer: str) -> Streams:
    """One consumer group's streams: a copy of each partition's entries."""
    return tuple(replace(s, name=f"{s.name}{GROUP_MARK}{consumer}") for s in base)


def base_streams(bound: BoundIntent, namespace: str = "") -> Streams:
    """A transitory intent's partitions (where its entries are deduplicated)."""
    intent = bound.intent
    assert isinstance(intent, Transitory)
    return tuple(
        StreamSpec(
            name,
            max_deliveries=intent.max_deliveries,
            visibility_seconds=intent.visibility.total_seconds(),
            max_age_seconds=_seconds(intent.max_age),
            # the intent's bound, shared by its partitions
            max_len=None if intent.max_len is None else -(-intent.max_len // intent.partitions),
            retry_backoff_seconds=intent.retry_backoff.total_seconds(),
            dead_max=intent.dead_max,
            dead_max_age_seconds=intent.dead_max_age.total_seconds(),
            replicas=intent.replicas,
        )
        for name in partition_names(stored_name(namespace, intent.name), intent.partitions)
    )


def table_spec(bound: BoundIntent, namespace: str = "") -> TableSpec:
    intent = bound.intent
    name = stored_name(namespace, intent.name)
    if isinstance(intent, Acid):
        return TableSpec(name, tuple(bound.codec.columns), intent.key, indexes=intent.index)
    assert isinstance(intent, Amorphous)
    by_name = {c.name: c for c in bound.codec.columns}
    keyed = tuple(by_name[n] for n in (*intent.partition, *intent.order))
    retain = intent.retain
    return TableSpec(
        name,
        keyed,
        intent.partition,
        intent.order,
        ttl_seconds=None if retain is None else int(retain.total_seconds()),
        consistency=intent.consistency,
    )


class OpBuilder:
    """Builds each intent's op; the specs an intent needs are built once and kept. Every name
    is the intent's stored name: prefixed by the store's namespace when it has one."""

    def __init__(self, queues: dict[Priority, Streams], namespace: str = "") -> None:
        self.queues = queues
        self.namespace = namespace
        self._counts: dict[BoundIntent, CountSpec] = {}
        self._streams: dict[BoundIntent, Streams] = {}
        self._bases: dict[BoundIntent, tuple[Streams, tuple[Streams, ...]]] = {}
        self._tables: dict[BoundIntent, TableSpec] = {}
        self._ttls: dict[BoundIntent, int] = {}

    def streams(self, bound: BoundIntent) -> Streams:
        """The partitions of a transitory intent's stream."""
        found = self._streams.get(bound)
        if found is None:
            found = self._streams[bound] = stream_specs(bound, self.namespace)
        return found

    def consumer_streams(self, bound: BoundIntent, consumer: str | None) -> Streams:
        """The streams one consumer reads: its group's, or the intent's when it has one."""
        if consumer is None:
            return self.streams(bound)
        return group_streams(base_streams(bound, self.namespace), consumer)

    def _partitions(self, bound: BoundIntent) -> tuple[Streams, tuple[Streams, ...]]:
        """The partitions, and per partition its consumer groups' streams (empty for one)."""
        found = self._bases.get(bound)
        if found is None:
            intent = bound.intent
            assert isinstance(intent, Transitory)
            base = base_streams(bound, self.namespace)
            groups = [group_streams(base, c) for c in intent.consumers]
            copies = tuple(tuple(g[i] for g in groups) for i in range(len(base)))
            found = self._bases[bound] = (base, copies)
        return found

    def table(self, bound: BoundIntent) -> TableSpec:
        found = self._tables.get(bound)
        if found is None:
            found = self._tables[bound] = table_spec(bound, self.namespace)
        return found

    def volatile_name(self, bound: BoundIntent) -> str:
        """The name a volatile intent's keys are stored under."""
        return stored_name(self.namespace, bound.name)

    def write(self, work: Work) -> Op:
        """The op that writes ``work`` to its intent's own store."""
        bound, task = work.bound, work.task
        tier = bound.tier
        if task.delete:
            return self.tombstone(work)
        if tier is Tier.VOLATILE:
            ttl_us = self._ttls.get(bound)
            if ttl_us is None:
                intent = bound.intent
                assert isinstance(intent, Volatile)
                assert intent.ttl is not None
                ttl_us = self._ttls[bound] = int(intent.ttl.total_seconds() * 1_000_000)
            key = key_of(bound, work.obj)
            name = self.volatile_name(bound)
            return Put(name, key, task.ts, task.ts + ttl_us, task.payload, task.write_id)
        if tier is Tier.TRANSITORY:
            streams, copies = self._partitions(bound)
            at = 0
            if len(streams) > 1:
                # the same write always picks the same partition: a replay meets its dedup marker
                by = key_of(bound, work.obj) if bound.key else task.write_id
                at = pick(by, len(streams))
            return Append(
                streams[at],
                work.dedup_key,
                task.payload,
                copies=copies[at],
                not_before=task.not_before,
            )
        if tier is Tier.ACID:
            row = bound.codec.to_key_row(work.obj, bound.key)
            return Upsert(self.table(bound), row, task.ts, task.write_id)
        if bound.counting is not None:
            return self.contribution(work)
        table = self.table(bound)
        values = bound.codec.key_values(work.obj, bound.key)
        return Document(table, values, task.payload, task.ts, task.write_id)

    def tombstone(self, work: Work) -> Op:
        """A delete's op: ``work.obj`` holds the key values. A volatile tombstone expires when
        the value would have (an older save expires before it); an amorphous one is kept as
        long as the intent keeps rows; acid keeps its own (see ``sql_tombstones``)."""
        bound, task = work.bound, work.task
        key: tuple[Any, ...] = work.obj
        if bound.tier is Tier.VOLATILE:
            intent = bound.intent
            assert isinstance(intent, Volatile)
            assert intent.ttl is not None
            expires = task.ts + int(intent.ttl.total_seconds() * 1_000_000)
            name = self.volatile_name(bound)
            return Put(name, key_text(key), task.ts, expires, TOMBSTONE, task.write_id)
        if bound.tier is Tier.ACID:
            values = dict(zip(bound.key, key, strict=True))
            return Upsert(self.table(bound), values, task.ts, task.write_id, gone=True)
        assert bound.tier is Tier.AMORPHOUS
        assert bound.counting is None
        return Document(self.table(bound), key, TOMBSTONE, task.ts, task.write_id)

    def count(self, bound: BoundIntent) -> CountSpec:
        """A Count's tables (under the stored name)."""
        found = self._counts.get(bound)
        if found is None:
            assert bound.counting is not None
            spec = bound.counting.spec
            found = replace(spec, name=stored_name(self.namespace, spec.name))
            self._counts[bound] = found
        return found

    def contribution(self, work: Work) -> Contribution:
        """A counted save's contribution: its tally, named and timed by the save itself unless
        the Count reads both from the object (``identity=``, ``at=``)."""
        bound, task = work.bound, work.task
        assert bound.counting is not None
        *key, at_us, n, f, cid = msgspec.structs.astuple(work.obj)
        return Contribution(
            self.count(bound),
            tuple(key),
            task.write_id if cid is None else cid,
            task.ts if at_us is None else at_us,
            task.ts,
            task.write_id,
            n,
            f,
        )

    def enqueue(self, work: Work) -> Append:
        """The op that puts ``work`` on its priority's task queue (no dedup: see Append)."""
        queue = self.queues[work.bound.priority]
        stream = queue[0] if len(queue) == 1 else queue[pick(work.dedup_key, len(queue))]
        return Append(
            stream,
            work.dedup_key,
            TASK_ENCODER.encode(work.task),
            dedupe=False,
            not_before=work.task.not_before,
        )


def key_of(bound: BoundIntent, obj: Any) -> str:
    return key_text(bound.codec.key_values(obj, bound.key))
