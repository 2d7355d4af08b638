"""Point reads and partition queries, with read-through rebuild for volatile intents."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .backends.base import Put, key_text
from .errors import ValidationError
from .events import Events
from .intents import Tier, Volatile
from .model import BoundIntent
from .singleflight import SingleFlight
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

    def query(self, bound: BoundIntent, given: dict[str, Any], limit: int) -> list[Any]:
        where = f"query({bound.model.__qualname__}, {bound.name!r})"
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
