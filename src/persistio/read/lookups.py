"""Reads besides point reads: acid lookups by an index (``find``) and amorphous ranges.

``find(Model, intent, limit=, **fields)`` reads an Acid intent's rows by equal values of the
fields of one declared index (``Acid(..., index=[("owner_id",)])``), or of its first fields, so
the database answers it from that index; any other set of fields is refused, naming the indexes,
rather than served by a scan. The amorphous range (``query(..., since=, until=,
oldest_first=)``) bounds the first ``order`` field: ``since`` included, ``until`` excluded.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from persistio.errors import ValidationError
from persistio.model.declare import BoundIntent
from persistio.model.intents import Acid, Amorphous, Tier
from persistio.tiers.tier_set import Stores

MAX_FIND_LIMIT = 10_000


def _check_limit(limit: object, where: str) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_FIND_LIMIT:
        raise ValidationError(f"{where}: limit={limit!r}: use an int from 1 to {MAX_FIND_LIMIT}")
    return limit


def served_by(intent: Acid, names: set[str]) -> tuple[str, ...] | None:
    """The fields, in index order, of the index whose first fields are ``names``; None."""
    for index in intent.index:
        if set(index[: len(names)]) == names:
            return index[: len(names)]
    return None


def find(stores: Stores, bound: BoundIntent, given: dict[str, Any], limit: object) -> list[Any]:
    where = f"find({bound.model.__qualname__}, {bound.name!r})"
    intent = bound.intent
    if not isinstance(intent, Acid):
        raise ValidationError(f"{where}: find() reads Acid intents; this one is {bound.tier}")
    n = _check_limit(limit, where)
    fields = served_by(intent, set(given)) if given else None
    if fields is None:
        declared = ", ".join(repr(i) for i in intent.index) or "none"
        raise ValidationError(
            f"{where}: no index serves the fields {tuple(sorted(given))} (declared indexes: "
            f"{declared}); declare one, e.g. pio.Acid({intent.name!r}, key={intent.key!r}, "
            f"index=[{tuple(sorted(given))!r}]), or read by key with get()"
        )
    values = bound.codec.check_key(given, fields, where)
    spec = stores.ops.table(bound)
    with stores.guard(Tier.ACID):
        stores.prepare(bound)
        rows = stores.acid.find(spec, dict(zip(fields, values, strict=True)), n)
    return [bound.codec.from_row(r) for r in rows]


def range_bounds(bound: BoundIntent, since: object, until: object, where: str) -> tuple[Any, Any]:
    """``since`` and ``until`` checked and converted to the first order field's type."""
    if since is None and until is None:
        return None, None
    intent = bound.intent
    assert isinstance(intent, Amorphous)
    if not intent.order:
        raise ValidationError(
            f"{where}: since=/until= bound the first order field, and {intent.name!r} has no "
            "order fields"
        )
    first = intent.order[0]
    out: list[Any] = []
    for label, value in (("since", since), ("until", until)):
        if value is None:
            out.append(None)
            continue
        try:
            (converted,) = bound.codec.check_key({first: value}, (first,), where)
        except ValidationError as exc:
            raise ValidationError(f"{exc} ({label}= bounds {first!r})") from None
        out.append(converted)
    if out[0] is not None and out[1] is not None and out[0] > out[1]:
        raise ValidationError(f"{where}: since={since!r} is after until={until!r}")
    return out[0], out[1]


def not_before_of(delay: object, not_before: object, where: str) -> float:
    """A delayed save's due time (epoch seconds; 0: not delayed), from one of its two forms."""
    if delay is not None and not_before is not None:
        raise ValidationError(f"{where}(delay=, not_before=): give one of the two")
    if delay is not None:
        if not isinstance(delay, timedelta) or delay < timedelta(0):
            raise ValidationError(f"{where}(delay={delay!r}): use a timedelta >= 0")
        return time.time() + delay.total_seconds()
    if not_before is not None:
        if not isinstance(not_before, datetime) or not_before.tzinfo is None:
            raise ValidationError(
                f"{where}(not_before={not_before!r}): use an aware datetime, e.g. "
                "datetime.now(UTC) + timedelta(minutes=10)"
            )
        return not_before.timestamp()
    return 0.0


__all__ = ["MAX_FIND_LIMIT", "find", "not_before_of", "range_bounds", "served_by"]
