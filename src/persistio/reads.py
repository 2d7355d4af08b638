"""Point reads and partition queries, with read-through rebuild for volatile intents."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from .backends.base import CountValues, Put, key_text
from .errors import ValidationError
from .intents import Tier, Volatile
from .model import BoundIntent
from .singleflight import SingleFlight
from .tally import aware, cover, from_micros, micros, series_range, value
from .wiring import Stores

MAX_QUERY_LIMIT = 10_000


class Reader:
    def __init__(self, backends: Stores, clock: Callable[[], int]) -> None:
        self._backends = backends
        self._clock = clock
        self.rebuilds: SingleFlight[Any] = SingleFlight()

    def get(self, bound: BoundIntent, given: dict[str, Any]) -> Any:
        where = f"get({bound.model.__qualname__}, {bound.name!r})"
        _not_a_count(bound, where)
        if bound.tier is Tier.TRANSITORY:
            raise ValidationError(
                f"{where}: transitory data is read by consumers (@store.consumer), not get()"
            )
        key = bound.codec.check_key(given, bound.key, where)
        with self._backends.guard(bound.tier):
            self._backends.prepare(bound)
            return self._read(bound, key)

    def _read(self, bound: BoundIntent, key: tuple[Any, ...]) -> Any:
        match bound.tier:
            case Tier.ACID:
                row = self._backends.acid.get(self._backends.ops.table(bound), key)
                return None if row is None else bound.codec.from_row(row)
            case Tier.AMORPHOUS:
                data = self._backends.amorphous.get(self._backends.ops.table(bound), key)
                return None if data is None else bound.codec.decode(data)
            case _:
                return self._get_volatile(bound, key)

    def _get_volatile(self, bound: BoundIntent, key: tuple[Any, ...]) -> Any:
        text = key_text(key)
        data = self._backends.volatile.get(bound.name, text)
        if data is not None:
            return bound.codec.decode(data)
        intent = bound.intent
        assert isinstance(intent, Volatile)
        assert intent.ttl is not None
        if intent.rebuild_from is None:
            return None
        ttl = intent.ttl
        plan = bound.model.__persistio_plan__  # type: ignore[attr-defined]
        source = plan.by_name[intent.rebuild_from]
        values = dict(zip(bound.key, key, strict=True))

        def rebuild() -> Any:
            found = self.get(source, {f: values[f] for f in source.key})
            if found is not None:
                ts = self._clock()
                ttl_us = int(ttl.total_seconds() * 1_000_000)
                put = Put(bound.name, text, ts, ts + ttl_us, bound.codec.encode(found))
                self._backends.volatile.write([put])  # already inside the guard
            return found

        # a storm of misses on one key runs one rebuild; the others wait for its result
        return self.rebuilds.do((bound.name, text), rebuild)

    def query(self, bound: BoundIntent, given: dict[str, Any], limit: int) -> list[Any]:
        where = f"query({bound.model.__qualname__}, {bound.name!r})"
        _not_a_count(bound, where)
        if bound.tier is not Tier.AMORPHOUS:
            raise ValidationError(
                f"{where}: query() reads amorphous intents; this one is {bound.tier}"
            )
        if (
            not isinstance(limit, int)
            or isinstance(limit, bool)
            or not 1 <= limit <= MAX_QUERY_LIMIT
        ):
            raise ValidationError(
                f"{where}: limit={limit!r}: use an int from 1 to {MAX_QUERY_LIMIT}"
            )
        spec = self._backends.ops.table(bound)
        partition = bound.codec.check_key(given, spec.key, where)
        return [
            bound.codec.decode(d) for d in self._backends.amorphous.query(spec, partition, limit)
        ]

    # -- counts ---------------------------------------------------------------------------------

    def count(
        self, bound: BoundIntent, given: dict[str, Any], since: object, until: object
    ) -> int | float:
        """The count of one key over the buckets overlapping [since, until): the fewest
        buckets that tile the range, coarsest first (see ``tally.cover``)."""
        where = f"count({bound.model.__qualname__}, {bound.name!r})"
        key, lo, hi = self._count_args(bound, given, since, until, where)
        if lo == hi:
            return 0
        assert bound.counting is not None
        runs = cover(bound.counting, lo, hi, micros(self._now()), where)
        n, f = 0, 0.0
        for found in self._read_counts(bound, key, runs):
            for bn, bf in found.values():
                n, f = n + bn, f + bf
        return value(n, f)

    def counts(
        self,
        bound: BoundIntent,
        given: dict[str, Any],
        since: object,
        until: object,
        granularity: object,
    ) -> list[tuple[datetime, int | float]]:
        """One value per bucket of ``granularity`` overlapping [since, until), zeros included."""
        where = f"counts({bound.model.__qualname__}, {bound.name!r})"
        key, lo, hi = self._count_args(bound, given, since, until, where)
        assert bound.counting is not None
        sizes = bound.counting.spec.granularities
        if granularity is None:
            size = sizes[0]
        elif isinstance(granularity, timedelta) and granularity.total_seconds() in sizes:
            size = int(granularity.total_seconds())
        else:
            declared = [str(timedelta(seconds=s)) for s in sizes]
            raise ValidationError(
                f"{where}: granularity={granularity!r}: use one of the declared bucket sizes "
                f"{declared} (or None: the finest)"
            )
        if lo == hi:
            return []
        run = series_range(size, lo, hi, where)
        (found,) = self._read_counts(bound, key, [run])
        step = size * 1_000_000
        return [
            (from_micros(b), value(*found.get(b, (0, 0.0)))) for b in range(run[1], run[2], step)
        ]

    def _count_args(
        self, bound: BoundIntent, given: dict[str, Any], since: object, until: object, where: str
    ) -> tuple[tuple[Any, ...], int, int]:
        if bound.counting is None:
            raise ValidationError(
                f"{where}: intent {bound.name!r} is {bound.tier} {type(bound.intent).__name__}, "
                "not a Count: read it with get() or query()"
            )
        key = bound.counting.counted.check_key(given, bound.key, where)
        lo = micros(aware(since, "since", where))
        hi = micros(self._now() if until is None else aware(until, "until", where))
        if lo > hi:
            raise ValidationError(f"{where}: since={since!r} is after until={until!r}")
        return key, lo, hi

    def _read_counts(
        self, bound: BoundIntent, key: tuple[Any, ...], runs: list[tuple[int, int, int]]
    ) -> CountValues:
        assert bound.counting is not None
        with self._backends.guard(bound.tier):
            self._backends.prepare(bound)
            return self._backends.amorphous.read_counts(bound.counting.spec, key, runs)

    def _now(self) -> datetime:
        return from_micros(self._clock())


def _not_a_count(bound: BoundIntent, where: str) -> None:
    if bound.counting is not None:
        raise ValidationError(
            f"{where}: intent {bound.name!r} is a Count: read it with store.count() or "
            "store.counts()"
        )
