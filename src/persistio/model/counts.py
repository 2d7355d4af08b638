"""``Count``: the fifth intent, a counting system kept on the amorphous tier, exact under replay.

A ``Count`` stores no object. Each save *contributes* ``weight(obj)`` (default 1) to the count of
its ``key`` in the UTC time bucket of its timestamp, at every bucket size declared. The
contribution is keyed by the save's write id (or by the object's ``identity``), so a spool
replay, a redelivered task or a worker killed mid-batch writes the same contribution again and
nothing is counted twice. How the stores keep it exact, and what a read costs, is in
``docs/concepts.md`` ("Counts").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeGuard

from persistio.model.intents import (
    CONSISTENCY_LEVELS,
    Intent,
    OnLag,
    OnOutage,
    Priority,
    Tier,
    _as_fields,
    _init,
    _shared,
)

MAX_BUCKET = timedelta(days=366)
MAX_KEEP = timedelta(seconds=630_720_000)  # 20 years: Cassandra's largest TTL
# Columns every count table has beside the key fields, and the other keywords of count() and
# counts(): a key field may not take these names.
RESERVED_COLUMNS = frozenset(
    {
        *("granularity", "bucket", "stage", "contribution", "ts", "n", "f", "version", "expires"),
        *("since", "until"),
    }
)


@dataclass(frozen=True, eq=False, init=False)
class Count(Intent):
    """Exact counts per key and UTC time bucket, on the amorphous tier (Cassandra or SQLite).

    Each save adds ``weight(obj)`` (1 by default) to the count of its ``key`` in the bucket of
    its timestamp: the save's write timestamp, or the datetime field named by ``at`` (an event
    time: a late event then lands in its own bucket). Buckets are aligned to the Unix epoch in
    UTC (hours on the hour, days at 00:00 UTC). Read with ``store.count`` and ``store.counts``.

    Args:
        name: The table's name.
        key: Fields the count is kept per (``()``: one count for the whole model).
        bucket: A bucket size, or several (``(minute, hour, day)``): each save counts in one
            bucket of each size; ``count()`` reads the coarsest ones that fit its range.
        retain: How long a bucket is kept after it ends: one ``timedelta`` for every size, or
            a tuple with one entry (``None`` = forever) per size of ``bucket``, in its order.
        at: A datetime field whose value picks the bucket, instead of the write timestamp.
        identity: Fields that identify the counted object (needs ``at``). A save of the same
            object again replaces its contribution instead of adding one: the count is of
            objects, not of saves, and a delete can uncount the object
            (``persistio.model.tasks.plan_uncount``).
        weight: ``weight(obj) -> int | float``, a pure function of the object.
        consistency: Cassandra consistency level for this count's requests.
    """

    tier = Tier.AMORPHOUS
    default_priority = Priority.NORMAL
    default_on_outage = "buffer"
    sheddable = False  # a count is exact: dropping contributions would break that

    key: tuple[str, ...]
    bucket: tuple[timedelta, ...]  # ascending; empty only until problems() reports it
    retain: tuple[timedelta | None, ...]  # one per bucket size, in the order of ``bucket``
    at: str | None
    identity: tuple[str, ...]
    weight: Callable[[Any], int | float] | None
    consistency: str | None

    def __init__(
        self,
        name: str,
        *,
        key: tuple[str, ...] | str = (),
        bucket: timedelta | tuple[timedelta, ...] | None = None,
        retain: timedelta | tuple[timedelta | None, ...] | None = None,
        at: str | None = None,
        identity: tuple[str, ...] | str = (),
        weight: Callable[[Any], int | float] | None = None,
        consistency: str | None = None,
        priority: Priority | None = None,
        on_outage: OnOutage | None = None,
        project: Callable[[Any], Any] | None = None,
        when: Callable[[Any], bool] | None = None,
        within: timedelta | None = None,
        on_lag: OnLag = "accept",
        **other: object,
    ) -> None:
        prio, outage = _shared(priority, on_outage, Count)
        _init(self, name, prio, outage, project, when, tuple(other), within, on_lag)
        sizes: Any = (bucket,) if isinstance(bucket, timedelta) else bucket
        keeps: Any = retain
        if isinstance(sizes, tuple | list) and not isinstance(keeps, tuple | list):
            keeps = (keeps,) * len(sizes)
        if _all_deltas(sizes) and isinstance(keeps, tuple | list) and len(keeps) == len(sizes):
            pairs = sorted(zip(sizes, keeps, strict=True), key=lambda p: p[0])
            sizes, keeps = tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
        object.__setattr__(self, "key", _as_fields(key) if _as_fields(key) is not None else key)
        object.__setattr__(self, "bucket", sizes)
        object.__setattr__(self, "retain", keeps)
        object.__setattr__(self, "at", at)
        object.__setattr__(self, "identity", _as_fields(identity) or identity)
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "consistency", consistency)

    def key_fields(self) -> tuple[str, ...]:
        return self.key

    def problems(self) -> list[str]:
        found = super().problems()
        key: object = self.key
        if not isinstance(key, tuple) or not all(isinstance(f, str) for f in key):
            found.append("key= must name fields of the object, e.g. key=('venue_id',)")
        elif len(set(key)) != len(key):
            found.append(f"key={key!r} names a field twice")
        found.extend(self._bucket_problems())
        at: object = self.at
        if at is not None and not isinstance(at, str):
            found.append(f"at={at!r}: name a datetime field of the object, e.g. at='at'")
        identity: object = self.identity
        if not isinstance(identity, tuple) or not all(isinstance(f, str) for f in identity):
            found.append("identity= must name fields of the object, e.g. identity=('id',)")
        elif identity and self.at is None:
            found.append(
                "identity= needs at='<datetime field>': an identified object must find its "
                "bucket from its own fields, so a later save (or a delete) reaches the same one"
            )
        weight: object = self.weight
        if weight is not None and not callable(weight):
            found.append("weight= must be a callable taking the object and returning a number")
        if self.consistency is not None and self.consistency not in CONSISTENCY_LEVELS:
            found.append(f"consistency={self.consistency!r}: use one of {CONSISTENCY_LEVELS}")
        return found

    def _bucket_problems(self) -> list[str]:
        sizes: object = self.bucket
        if sizes is None:
            return ["a Count needs bucket=timedelta(...) or a tuple of them, e.g. bucket=HOUR"]
        if not _all_deltas(sizes) or not sizes:
            return [f"bucket={sizes!r}: use a timedelta or a tuple of timedeltas"]
        found: list[str] = []
        for size in sizes:
            whole = size.total_seconds() == int(size.total_seconds())
            if size < timedelta(seconds=1) or not whole or size > MAX_BUCKET:
                found.append(
                    f"bucket={size!r}: use a whole number of seconds, from 1 s to 366 days"
                )
        if len(set(sizes)) != len(sizes):
            found.append(f"bucket={sizes!r} names a size twice")
        keeps: object = self.retain
        if not isinstance(keeps, tuple) or len(keeps) != len(sizes):
            found.append(
                f"retain={keeps!r}: use one timedelta (or None) for every bucket size, or a "
                f"tuple of {len(sizes)} (one per size of bucket=)"
            )
            return found
        for size, keep in zip(sizes, keeps, strict=True):
            if keep is None:
                continue
            if not isinstance(keep, timedelta) or keep < timedelta(seconds=1):
                found.append(f"retain={keep!r}: use a timedelta of at least one second, or None")
            elif keep + size > MAX_KEEP:
                found.append(f"retain={keep!r}: a bucket may be kept 20 years at most")
        return found


def _all_deltas(value: object) -> TypeGuard[tuple[timedelta, ...] | list[timedelta]]:
    return isinstance(value, tuple | list) and all(isinstance(v, timedelta) for v in value)
