"""Point reads and partition queries, with read-through rebuild for volatile intents."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from .backends.base import CountValues, Put, key_text
from .errors import ValidationError
from .events import Events
from .intents import Tier, Volatile
from .lookups import range_bounds
from .model import BoundIntent
from .singleflight import SingleFlight
from .tally import aware, cover, from_micros, micros, series_range, value
from .wiring import Stores

MAX_QUERY_LIMIT = 10_000


class Reader:
    """Reads, each of which tells the write clock the timestamp it found (see clock.py)."""

    def __init__(
        self, backends: Stores, observe: Callable[[int, str], None], events: Events
    ) -> None:
        self._backends = backends
        self._observe = observe  # (timestamp, where it was seen)
        self._events = events
        self.rebuilds: SingleFlight[tuple[Any, int] | None] = SingleFlight()

    def get(self, bound: BoundIntent, given: dict[str, Any]) -> Any:
        found = self.get_stamped(bound, given)
        return None if found is None else found[0]

    def get_stamped(self, bound: BoundIntent, given: dict[str, Any]) -> tuple[Any, int] | None:
        """The object and the write timestamp it was stored with, or None."""
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

    def _read(self, bound: BoundIntent, key: tuple[Any, ...]) -> tuple[Any, int] | None:
        match bound.tier:
            case Tier.ACID:
                row = self._backends.acid.get_stamped(self._backends.ops.table(bound), key)
                if row is None:
                    return None
                self._observe(row[1], bound.name)
                return bound.codec.from_row(row[0]), row[1]
            case Tier.AMORPHOUS:
                data = self._backends.amorphous.get_stamped(self._backends.ops.table(bound), key)
                if data is None:
                    return None
                self._observe(data[1], bound.name)
                return bound.codec.decode(data[0]), data[1]
            case _:
                return self._get_volatile(bound, key)

    def _get_volatile(self, bound: BoundIntent, key: tuple[Any, ...]) -> tuple[Any, int] | None:
        text = key_text(key)
        data = self._backends.volatile.get_stamped(bound.name, text)
        if data is not None:
            self._observe(data[1], bound.name)
            return bound.codec.decode(data[0]), data[1]
        intent = bound.intent
        assert isinstance(intent, Volatile)
        assert intent.ttl is not None
        if intent.rebuild_from is None:
            return None
        ttl = intent.ttl
        plan = bound.model.__persistio_plan__  # type: ignore[attr-defined]
        source = plan.by_name[intent.rebuild_from]
        values = dict(zip(bound.key, key, strict=True))

        def rebuild() -> tuple[Any, int] | None:
            found = self.get_stamped(source, {f: values[f] for f in source.key})
            if found is not None:
                obj, ts = found
                self._events.emit("rebuilding", intent=bound.name, key=text, source_ts=ts)
                # stamped with the source's timestamp, not the time of the rebuild: a save
                # racing this rebuild is newer than what it read, so it wins in the cache too
                # (it lives a whole TTL from now, however old the source row is)
                expires_at = time.time_ns() // 1000 + int(ttl.total_seconds() * 1_000_000)
                put = Put(bound.name, text, ts, expires_at, bound.codec.encode(obj))
                self._backends.volatile.write([put])  # already inside the guard
            return found

        # a storm of misses on one key runs one rebuild; the others wait for its result
        return self.rebuilds.do((bound.name, text), rebuild)

    def query(
        self,
        bound: BoundIntent,
        given: dict[str, Any],
        limit: int,
        since: object = None,
        until: object = None,
        oldest_first: bool = False,
    ) -> list[Any]:
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
        lo, hi = range_bounds(bound, since, until, where)
        if not isinstance(oldest_first, bool):
            raise ValidationError(f"{where}: oldest_first={oldest_first!r}: use True or False")
        amorphous = self._backends.amorphous
        if lo is None and hi is None and not oldest_first:
            found = amorphous.query(spec, partition, limit)
        else:
            found = amorphous.query(
                spec, partition, limit, since=lo, until=hi, oldest_first=oldest_first
            )
        return [bound.codec.decode(d) for d in found]

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

    @staticmethod
    def _now() -> datetime:
        return datetime.now(UTC)


def _not_a_count(bound: BoundIntent, where: str) -> None:
    if bound.counting is not None:
        raise ValidationError(
            f"{where}: intent {bound.name!r} is a Count: read it with store.count() or "
            "store.counts()"
        )
