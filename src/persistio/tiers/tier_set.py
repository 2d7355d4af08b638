"""``Stores``: the backends of one ``Persistio``, wired once and passed down explicitly.

A tier maps to its backend; a backend may serve several tiers (one Redis for the streams and the
volatile values), and then it has one combiner, because it is one server. Circuit breakers stay
per tier, as ``status()`` shows them and drills open them: a write to a shared server counts for
the breaker of each tier it carries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from persistio.backends.base import (
    AcidBackend,
    AmorphousBackend,
    Append,
    Backend,
    Contribution,
    Document,
    Op,
    Put,
    StreamSpec,
    TransitoryBackend,
    Upsert,
    VolatileBackend,
)
from persistio.model.declare import BoundIntent
from persistio.model.intents import Priority, Tier
from persistio.outage.breaker import CircuitBreaker, guard_all
from persistio.tiers.op_builder import OpBuilder, Streams

OP_KINDS = (Append, Put, Upsert, Document, Contribution)
TIER_OF: dict[type, Tier] = {
    Append: Tier.TRANSITORY,
    Put: Tier.VOLATILE,
    Upsert: Tier.ACID,
    Document: Tier.AMORPHOUS,
    Contribution: Tier.AMORPHOUS,
}


@dataclass
class Stores:
    transitory: TransitoryBackend
    volatile: VolatileBackend
    acid: AcidBackend
    amorphous: AmorphousBackend
    queues: dict[Priority, Streams]  # per priority, highest first: its partitions
    breaker_factory: Callable[[str], CircuitBreaker] = CircuitBreaker
    # intents whose table/stream this process has created (or found): see prepare()
    ready: set[tuple[Tier, str]] = field(default_factory=set)
    namespace: str = ""  # prefixes every table, stream and key name (see catalog.stored_name)

    def __post_init__(self) -> None:
        self.ops = OpBuilder(self.queues, self.namespace)
        self.by_tier: dict[Tier, Backend] = {
            Tier.TRANSITORY: self.transitory,
            Tier.VOLATILE: self.volatile,
            Tier.ACID: self.acid,
            Tier.AMORPHOUS: self.amorphous,
        }
        self.breakers: dict[Tier, CircuitBreaker] = {t: self.breaker_factory(t.value) for t in Tier}

    def breakers_of(self, ops: Sequence[Op]) -> list[CircuitBreaker]:
        """The breakers of every tier ``ops`` write to."""
        kinds = {type(op) for op in ops}
        tiers = dict.fromkeys(TIER_OF[k] for k in OP_KINDS if k in kinds)  # documents and counts
        return [self.breakers[t] for t in tiers]

    def guard_ops(self, ops: Sequence[Op]) -> Any:
        """The breakers of every tier ``ops`` write to, as one guard."""
        return guard_all(self.breakers_of(ops))

    def distinct(self) -> list[Backend]:
        """Each backend once, whatever number of tiers it serves."""
        return list({id(b): b for b in self.by_tier.values()}.values())

    def guard(self, tier: Tier) -> Any:
        """Every backend call goes through its tier's circuit breaker."""
        return self.breakers[tier].guard()

    def prepare(self, bound: BoundIntent) -> None:
        """Create the intent's table or stream the first time this process touches it.

        This is what lets a save, a worker or a spool replay succeed on a backend that was down
        when the model was first seen: setup happens with the first write that reaches it.
        """
        if (bound.tier, bound.name) in self.ready:
            return
        match bound.tier:
            case Tier.TRANSITORY:
                self.transitory.setup(list(self.ops.streams(bound)))
            case Tier.ACID:
                self.acid.setup([self.ops.table(bound)])
            case Tier.AMORPHOUS if bound.counting is not None:
                self.amorphous.setup_counts([self.ops.count(bound)])
            case Tier.AMORPHOUS:
                self.amorphous.setup([self.ops.table(bound)])
            case Tier.VOLATILE:
                pass  # keys need no schema
        self.ready.add((bound.tier, bound.name))

    def all_queues(self) -> list[StreamSpec]:
        """Every partition of every task queue."""
        return [spec for queue in self.queues.values() for spec in queue]

    def after_fork(self) -> None:
        """In a child process: each backend's own connections, fresh locks."""
        for backend in self.distinct():
            reset = getattr(backend, "after_fork", None)
            if reset is not None:
                reset()
        for breaker in self.breakers.values():
            breaker.after_fork()

    def close(self) -> None:
        for backend in self.distinct():
            backend.close()
