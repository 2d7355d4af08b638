"""Point reads and partition queries, with read-through rebuild for volatile intents."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from persistio.backends.base import TOMBSTONE, CountValues, Put, key_text
from persistio.errors import ValidationError
from persistio.events import Events
from persistio.model.counting import aware, cover, from_micros, micros, series_range, value
from persistio.model.declare import BoundIntent
from persistio.model.intents import Tier, Volatile
from persistio.read.lookups import range_bounds
from persistio.read.pages import Page, check_size, unwrap, wrap
from persistio.read.singleflight import SingleFlight
from persistio.tiers.tier_set import Stores

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
                if data[0] == TOMBSTONE:
                    return None  # deleted
                return bound.codec.decode(data[0]), data[1]
            case _:
                return self._get_volatile(bound, key)

    def _get_volatile(self, bound: BoundIntent, key: tuple[Any, ...]) -> tuple[Any, int] | None:
        text = key_text(key)
        data = self._backends.volatile.get_stamped(self._backends.ops.volatile_name(bound), text)
        if data is not None:
            self._observe(data[1], bound.name)
            if data[0] == TOMBSTONE:
                return None  # deleted: not rebuilt (a rebuild older than the delete loses)
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
                name = self._backends.ops.volatile_name(bound)
                put = Put(name, text, ts, expires_at, bound.codec.encode(obj))
                self._backends.volatile.write([put])  # already inside the guard
            return found

        # a storm of misses on one key runs one rebuild; the others wait for its result
        return self.rebuilds.do((bound.name, text), rebuild)

    def get_many(self, bound: BoundIntent, keys: object) -> list[Any]:
        """The objects stored under each of ``keys`` (dicts of key fields), aligned with them,
        None where absent: one round trip per store, whatever the number of keys."""
        where = f"get_many({bound.model.__qualname__}, {bound.name!r})"
        _not_a_count(bound, where)
        if bound.tier is Tier.TRANSITORY:
            raise ValidationError(
                f"{where}: transitory data is read by consumers (@store.consumer), not get_many()"
            )
        if not isinstance(keys, list | tuple):
            raise ValidationError(
                f"{where}: keys must be a list of dicts of key fields {bound.key}; got "
                f"{type(keys).__name__}"
            )
        checked: list[tuple[Any, ...]] = []
        for i, given in enumerate(keys):
            if not isinstance(given, dict):
                raise ValidationError(
                    f"{where}: keys[{i}] must be a dict of key fields {bound.key}; got "
                    f"{type(given).__name__}"
                )
            checked.append(bound.codec.check_key(given, bound.key, f"{where}: keys[{i}]"))
        if not checked:
            return []
        unique = list(dict.fromkeys(checked))  # a key asked twice is read once
        with self._backends.guard(bound.tier):
            self._backends.prepare(bound)
            found = dict(zip(unique, self._read_many(bound, unique), strict=True))
        return [found[key] for key in checked]

    def _read_many(self, bound: BoundIntent, keys: list[tuple[Any, ...]]) -> list[Any]:
        stores = self._backends
        decode: Callable[[Any], Any] = bound.codec.decode
        hits: list[tuple[Any, int] | None]
        match bound.tier:
            case Tier.ACID:
                hits = list(stores.acid.get_many_stamped(stores.ops.table(bound), keys))
                decode = bound.codec.from_row
            case Tier.AMORPHOUS:
                hits = list(stores.amorphous.get_many_stamped(stores.ops.table(bound), keys))
            case _:
                texts = [key_text(k) for k in keys]
                name = stores.ops.volatile_name(bound)
                hits = list(stores.volatile.get_many_stamped(name, texts))
        out: list[Any] = []
        rebuilds = bound.tier is Tier.VOLATILE and getattr(bound.intent, "rebuild_from", None)
        for key, hit in zip(keys, hits, strict=True):
            if hit is not None:
                self._observe(hit[1], bound.name)
                out.append(None if hit[0] == TOMBSTONE else decode(hit[0]))
            elif rebuilds:
                # a miss rebuilds from its source like get() does (one rebuild per key)
                rebuilt = self._get_volatile(bound, key)
                out.append(None if rebuilt is None else rebuilt[0])
            else:
                out.append(None)
        return out

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
        return [bound.codec.decode(d) for d in found if d != TOMBSTONE]

    def page(
        self, bound: BoundIntent, given: dict[str, Any], page_size: object, cursor: object
    ) -> Page[Any]:
        """One page of an amorphous partition, newest first, with the cursor that follows it."""
        where = f"pages({bound.model.__qualname__}, {bound.name!r})"
        _not_a_count(bound, where)
        if bound.tier is not Tier.AMORPHOUS:
            raise ValidationError(
                f"{where}: pages() reads amorphous intents; this one is {bound.tier}"
            )
        size = check_size(page_size, where)
        after = unwrap(bound.name, cursor, where)
        spec = self._backends.ops.table(bound)
        partition = bound.codec.check_key(given, spec.key, where)
        with self._backends.guard(bound.tier):
            self._backends.prepare(bound)
            try:
                rows, resume = self._backends.amorphous.page(spec, partition, size, after)
            except ValueError as exc:  # the backend could not read its part of the cursor
                raise ValidationError(f"{where}: cursor is not one of this intent's") from exc
        rows = [r for r in rows if r != TOMBSTONE]  # deleted rows: a page may hold fewer
        return Page([bound.codec.decode(r) for r in rows], wrap(bound.name, resume))

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
            spec = self._backends.ops.count(bound)
            return self._backends.amorphous.read_counts(spec, key, runs)

    @staticmethod
    def _now() -> datetime:
        return datetime.now(UTC)


def _not_a_count(bound: BoundIntent, where: str) -> None:
    if bound.counting is not None:
        raise ValidationError(
            f"{where}: intent {bound.name!r} is a Count: read it with store.count() or "
            "store.counts()"
        )
