"""Streams whose entries no consumer of this process reads.

``drain()`` runs this process's consumers only, so a stream with entries and no consumer here is
not waited on: it is reported instead (``drain()``'s return value, ``status()["unconsumed"]``,
the worker's start-up log), so a missing ``@store.consumer`` never looks like "nothing pending".
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from persistio.model.declare import BoundIntent
from persistio.model.intents import Tier, Transitory
from persistio.tiers.op_builder import Streams
from persistio.tiers.tier_set import Stores
from persistio.work.consumers import consumer_key


def consumer_places(bounds: Sequence[BoundIntent], stores: Stores) -> list[tuple[str, Streams]]:
    """Every consumer a set of transitory intents can have (``<intent>`` or
    ``<intent>~<name>``), with the streams it reads."""
    found: list[tuple[str, Streams]] = []
    for bound in bounds:
        intent = bound.intent
        assert isinstance(intent, Transitory)
        for name in intent.consumers or (None,):
            key = consumer_key(intent.name, name)
            found.append((key, stores.ops.consumer_streams(bound, name)))
    return found


def unconsumed(
    bounds: Sequence[BoundIntent], stores: Stores, consumers: Collection[str]
) -> dict[str, int]:
    """``{consumer: pending entries}`` of the streams with entries and no consumer here."""
    found: dict[str, int] = {}
    transitory = stores.transitory
    for key, specs in consumer_places(bounds, stores):
        if key in consumers:
            continue
        with stores.guard(Tier.TRANSITORY):
            n = sum(transitory.stats(spec).pending for spec in specs)
        if n:
            found[key] = n
    return found


def unconsumed_text(found: dict[str, int]) -> str:
    listed = ", ".join(f"{k} ({n})" for k, n in sorted(found.items()))
    return (
        f"entries wait in stream(s) no consumer of this process reads: {listed}; register "
        "@store.consumer(...) for them in the worker's module, or run a worker that does"
    )


__all__ = ["consumer_places", "unconsumed", "unconsumed_text"]
