"""What a ``Count`` becomes at ``@persist`` time, and the bucket arithmetic of its reads.

A counted save is planned like any other intent: its task's payload is a small *tally* (the key
values, the event time, the weight and the identity, computed once when the save is planned),
so a worker, a spool replay or an outbox dispatch rebuilds exactly the same contribution
without calling the model's ``weight`` again.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from persistio.backends.base import CountSpec, bucket_of, key_text
from persistio.errors import IntentError, ValidationError
from persistio.model.codec import INT64_MAX, INT64_MIN, KEY_KINDS, Codec
from persistio.model.counts import RESERVED_COLUMNS, Count
from persistio.model.intents import Tier
from persistio.model.limits import Check, checker

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_BUCKETS = 10_000  # buckets one read may touch: a longer range needs a coarser bucket size


@dataclass(frozen=True, eq=False)
class CountPlan:
    """A Count checked against the type it counts: its backend spec and its tally function."""

    spec: CountSpec
    counted: Codec  # the counted type (the model, or what project= returns): key checks
    tally: Callable[[Any], Any]  # model object -> tally struct (the task's payload)
    tally_type: type
    retain_us: tuple[int | None, ...]  # per granularity, ascending
    identified: bool  # contributions are named by the object's identity, not the write id


def micros(value: datetime) -> int:
    """Microseconds since the epoch (a naive datetime is UTC); integer arithmetic, exact."""
    delta = (value if value.tzinfo else value.replace(tzinfo=UTC)) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def build(intent: Count, model: type, counted: type, label: str) -> CountPlan:
    """Check ``intent``'s fields against ``counted``; IntentError names the fix."""
    codec = Codec(counted)
    by_name = {c.name: c for c in codec.columns}
    stored = counted.__qualname__

    def field(name: str, option: str) -> Any:
        column = by_name.get(name)
        if column is None:
            raise IntentError(
                f"{label}: {option} field {name!r} is not a field of {stored}; "
                f"its fields are {tuple(by_name)}"
            )
        return column

    for name in (*intent.key, *intent.identity):
        column = field(name, "key" if name in intent.key else "identity")
        if column.kind not in KEY_KINDS or column.nullable:
            raise IntentError(
                f"{label}: field {name!r} must be a non-optional int, str, bool, datetime, "
                f"date, UUID, Decimal or bytes to key a count (it is {column.kind}"
                f"{', optional' if column.nullable else ''})"
            )
    clash = sorted(set(intent.key) & RESERVED_COLUMNS)
    if clash:
        raise IntentError(
            f"{label}: key field(s) {clash} would clash with the count table's own columns or "
            f"count()'s arguments {sorted(RESERVED_COLUMNS)}: count a projection (project=) "
            "that renames them"
        )
    if intent.at is not None:
        column = field(intent.at, "at")
        if column.kind != "datetime" or column.nullable:
            raise IntentError(
                f"{label}: at={intent.at!r} must name a non-optional datetime field "
                f"(it is {column.kind}{', optional' if column.nullable else ''})"
            )
    hints = typing.get_type_hints(counted)
    tally_type = msgspec.defstruct(
        f"{intent.name}_tally",
        [
            *((f"k{i}", hints[name]) for i, name in enumerate(intent.key)),
            ("at", int | None),  # µs; None: the write timestamp picks the bucket
            ("n", int),  # an int weight (summed exactly)
            ("f", float),  # a float weight
            ("cid", str | None),  # the identity; None: the write id is the contribution's id
        ],
        array_like=True,
        frozen=True,
    )
    seconds = tuple(int(b.total_seconds()) for b in intent.bucket)
    spec = CountSpec(
        intent.name,
        tuple(by_name[n] for n in intent.key),
        seconds,
        tuple(None if r is None else int(r.total_seconds()) for r in intent.retain),
        intent.consistency,
    )
    tally = _tally_function(
        intent, model, tally_type, checker(Tier.AMORPHOUS, codec, (*intent.key, *intent.identity))
    )
    keep = tuple(None if r is None else int(r.total_seconds()) * 1_000_000 for r in intent.retain)
    return CountPlan(spec, codec, tally, tally_type, keep, bool(intent.identity))


def _tally_function(
    intent: Count, model: type, tally_type: type, limits: Check | None
) -> Callable[[Any], Any]:
    key, at, identity = intent.key, intent.at, intent.identity
    project, weight = intent.project, intent.weight
    name = model.__qualname__
    where = f"{name}, intent {intent.name!r}"

    def tally(obj: Any) -> Any:
        counted = obj if project is None else project(obj)
        if limits is not None:  # a key value the store would refuse: refused at save
            limits(counted, name, intent.name)
        w = 1 if weight is None else weight(counted)
        if isinstance(w, int) and not isinstance(w, bool) and INT64_MIN <= w <= INT64_MAX:
            n, f = w, 0.0
        elif isinstance(w, float) and math.isfinite(w):
            n, f = 0, w
        else:
            raise ValidationError(
                f"{where}: weight returned {w!r}; it must return a 64-bit int or a finite float"
            )
        at_us = None if at is None else micros(getattr(counted, at))
        cid = key_text([getattr(counted, name) for name in identity]) if identity else None
        return tally_type(*(getattr(counted, name) for name in key), at_us, n, f, cid)

    return tally


def void(tally: Any) -> Any:
    """The same contribution with weight 0: what uncounts an identified object."""
    return msgspec.structs.replace(tally, n=0, f=0.0)


# -- reads -----------------------------------------------------------------------------------


def aware(value: object, name: str, where: str) -> datetime:
    if not isinstance(value, datetime):
        raise ValidationError(f"{where}: {name}={value!r}: use a datetime")
    if value.tzinfo is None:  # as for keys: a naive datetime means nothing certain
        raise ValidationError(f"{where}: {name} is a naive datetime; use an aware one")
    return value


def series_range(
    granularity: int, since_us: int, until_us: int, where: str
) -> tuple[int, int, int]:
    """``(granularity, first, stop)``: the buckets overlapping [since, until)."""
    step = granularity * 1_000_000
    first = bucket_of(since_us, granularity)
    stop = -(-until_us // step) * step
    if (stop - first) // step > MAX_BUCKETS:
        raise ValidationError(
            f"{where}: the range spans more than {MAX_BUCKETS} buckets of {granularity} s: "
            "read a shorter range, or a coarser bucket size"
        )
    return granularity, first, stop


def cover(
    plan: CountPlan, since_us: int, until_us: int, now_us: int, where: str
) -> list[tuple[int, int, int]]:
    """The fewest buckets that tile the finest buckets overlapping [since, until).

    Walks from the start, taking at each point the coarsest bucket size that starts there,
    ends within the range and is still kept (not past its ``retain``): a month of hours and days
    is read as a few dozen buckets, not 720. Returns runs of ``(granularity, first, stop)``.
    """
    sizes = plan.spec.granularities
    finest = sizes[0] * 1_000_000
    position = bucket_of(since_us, sizes[0])
    stop = -(-until_us // finest) * finest
    runs: list[tuple[int, int, int]] = []
    buckets = 0
    while position < stop:
        chosen = sizes[0]
        for size, keep in zip(reversed(sizes), reversed(plan.retain_us), strict=True):
            step = size * 1_000_000
            kept = keep is None or position + step + keep > now_us
            if position % step == 0 and position + step <= stop and kept:
                chosen = size
                break
        end = position + chosen * 1_000_000
        if runs and runs[-1][0] == chosen and runs[-1][2] == position:
            runs[-1] = (chosen, runs[-1][1], end)
        else:
            runs.append((chosen, position, end))
        position = end
        buckets += 1
        if buckets > MAX_BUCKETS:
            raise ValidationError(
                f"{where}: the range needs more than {MAX_BUCKETS} buckets: read a shorter "
                "range, or declare a coarser bucket size"
            )
    return runs


def value(n: int, f: float) -> int | float:
    """An int when no float weight contributed (the float part is exactly 0)."""
    return n if f == 0.0 else n + f


__all__ = ["MAX_BUCKETS", "CountPlan", "build", "cover", "micros", "series_range", "value"]
