"""Point reads and partition queries, with read-through rebuild for volatile intents."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .backends.base import Put, key_text
from .errors import ValidationError
from .intents import Tier, Volatile
from .model import BoundIntent
from .singleflight import SingleFlight
from .wiring import Stores

MAX_QUERY_LIMIT = 10_000


class Reader:
    def __init__(self, backends: Stores, clock: Callable[[], int]) -> None:
        self._backends = backends
        self._clock = clock
        self.rebuilds: SingleFlight[Any] = SingleFlight()

    def get(self, bound: BoundIntent, given: dict[str, Any]) -> Any:
        where = f"get({bound.model.__qualname__}, {bound.name!r})"
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
