"""Failover for the transitory and volatile tiers: a primary URL and fallbacks (another region).

Writes go to the first reachable member, in the order given; each member has its own circuit
breaker, so a dead primary costs one fast rejection. Workers claim from every reachable member,
so items written to a fallback during an outage are consumed there, and new ones flow back to the
primary once it answers again. Delivery ids carry their member's index (``"1|1700000000000-0"``),
so an ack goes back to the member the item came from.

Deduplication is per member: an item enqueued on the primary and then replayed to a fallback
during the switch-over may be delivered twice. Consumers are at-least-once anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar, Generic, TypeVar

from persistio.backends.base import (
    DeadEntry,
    Delivery,
    Op,
    StreamSpec,
    StreamStats,
    TransitoryBackend,
    VolatileBackend,
)
from persistio.errors import BackendUnavailable
from persistio.outage.breaker import CircuitBreaker

T = TypeVar("T")
M = TypeVar("M", TransitoryBackend, VolatileBackend)


class _Members(Generic[M]):
    def __init__(
        self, tier: str, members: Sequence[M], breaker: Callable[[str], CircuitBreaker]
    ) -> None:
        self.tier = tier
        self.members: list[M] = list(members)
        self.breakers = [breaker(f"{tier}[{i}]") for i in range(len(members))]

    def first(self, call: Callable[[M], T]) -> T:
        """``call`` on the first member that answers."""
        errors: list[str] = []
        for member, breaker in zip(self.members, self.breakers, strict=True):
            try:
                with breaker.guard():
                    return call(member)
            except BackendUnavailable as exc:
                errors.append(str(exc))
        raise BackendUnavailable(f"every {self.tier} member is down: {errors}", tier=self.tier)

    def each(self, call: Callable[[int, M], T]) -> list[T]:
        """``call`` on every member that answers; BackendUnavailable only when none does."""
        results: list[T] = []
        errors: list[str] = []
        for index, (member, breaker) in enumerate(zip(self.members, self.breakers, strict=True)):
            try:
                with breaker.guard():
                    results.append(call(index, member))
            except BackendUnavailable as exc:
                errors.append(str(exc))
        if errors and not results:
            raise BackendUnavailable(f"every {self.tier} member is down: {errors}", tier=self.tier)
        return results

    def close(self) -> None:
        for member in self.members:
            member.close()

    def after_fork(self) -> None:
        for member in self.members:
            reset = getattr(member, "after_fork", None)
            if reset is not None:
                reset()


def _split(delivery_id: str) -> tuple[int, str]:
    index, _, inner = delivery_id.partition("|")
    return int(index), inner


class FailoverTransitory:
    """A transitory backend over a primary and fallbacks."""

    tiers: ClassVar[frozenset[str]] = frozenset({"transitory"})
    bounded: ClassVar[bool] = True
    concurrent: ClassVar[bool] = False

    def __init__(
        self,
        members: Sequence[TransitoryBackend],
        breaker: Callable[[str], CircuitBreaker] = CircuitBreaker,
    ) -> None:
        self._m: _Members[TransitoryBackend] = _Members("transitory", members, breaker)

    def setup(self, streams: Sequence[StreamSpec]) -> None:
        self._m.each(lambda _i, m: m.setup(streams))

    def write(self, ops: Sequence[Op], deadline: float | None = None) -> list[bool]:
        return self._m.first(lambda m: m.write(ops, deadline))

    def claim(self, stream: StreamSpec, consumer: str, count: int) -> list[Delivery]:
        claimed: list[Delivery] = []

        def take(index: int, member: TransitoryBackend) -> None:
            if len(claimed) < count:
                for d in member.claim(stream, consumer, count - len(claimed)):
                    claimed.append(d._replace(id=f"{index}|{d.id}"))

        self._m.each(take)
        return claimed

    def ack(self, stream: StreamSpec, ids: Sequence[str]) -> None:
        by_member: dict[int, list[str]] = {}
        for delivery_id in ids:
            index, inner = _split(delivery_id)
            by_member.setdefault(index, []).append(inner)
        for index, inner_ids in by_member.items():
            with self._m.breakers[index].guard():
                self._m.members[index].ack(stream, inner_ids)

    def release(self, stream: StreamSpec, delivery: Delivery, delay_seconds: float) -> None:
        index, inner = _split(delivery.id)
        self._on(index, lambda m: m.release(stream, delivery._replace(id=inner), delay_seconds))

    def dead_letter(self, stream: StreamSpec, delivery: Delivery, reason: str) -> int:
        index, inner = _split(delivery.id)
        return self._on(index, lambda m: m.dead_letter(stream, delivery._replace(id=inner), reason))

    def dead_letters(self, stream: StreamSpec, limit: int) -> list[DeadEntry]:
        found: list[DeadEntry] = []

        def take(index: int, member: TransitoryBackend) -> None:
            found.extend(
                e._replace(id=f"{index}|{e.id}") for e in member.dead_letters(stream, limit)
            )

        self._m.each(take)
        return sorted(found, key=lambda e: e.dead_at)[:limit]

    def redrive(self, stream: StreamSpec, ids: Sequence[str] | None, limit: int) -> int:
        return sum(self._by_member(ids, lambda m, inner: m.redrive(stream, inner, limit)))

    def purge(self, stream: StreamSpec, ids: Sequence[str] | None) -> int:
        return sum(self._by_member(ids, lambda m, inner: m.purge(stream, inner)))

    def _by_member(
        self,
        ids: Sequence[str] | None,
        call: Callable[[TransitoryBackend, Sequence[str] | None], int],
    ) -> list[int]:
        if ids is None:
            return self._m.each(lambda _i, m: call(m, None))
        by_member: dict[int, list[str]] = {}
        for entry_id in ids:
            index, inner = _split(entry_id)
            by_member.setdefault(index, []).append(inner)
        done: list[int] = []
        for index, member_ids in by_member.items():

            def on_member(member: TransitoryBackend, chosen: list[str] = member_ids) -> int:
                return call(member, chosen)

            done.append(self._on(index, on_member))
        return done

    def _on(self, index: int, call: Callable[[TransitoryBackend], T]) -> T:
        with self._m.breakers[index].guard():
            return call(self._m.members[index])

    def stats(self, stream: StreamSpec) -> StreamStats:
        found = self._m.each(lambda _i, m: m.stats(stream))
        ages = [s.oldest_age_seconds for s in found if s.oldest_age_seconds is not None]
        return StreamStats(
            sum(s.pending for s in found),
            max(ages) if ages else None,
            sum(s.dead_letters for s in found),
        )

    def remember(self, key: str, value: str, ttl_seconds: float) -> str:
        return self._m.first(lambda m: m.remember(key, value, ttl_seconds))

    def advance(self, key: str, ts: int) -> int:
        return self._m.first(lambda m: m.advance(key, ts))

    def ping(self) -> None:
        self._m.first(lambda m: m.ping())

    def close(self) -> None:
        self._m.close()

    def after_fork(self) -> None:
        self._m.after_fork()


class FailoverVolatile:
    """A volatile backend over a primary and fallbacks; reads return the first member's hit."""

    tiers: ClassVar[frozenset[str]] = frozenset({"volatile"})
    bounded: ClassVar[bool] = True
    concurrent: ClassVar[bool] = False

    def __init__(
        self,
        members: Sequence[VolatileBackend],
        breaker: Callable[[str], CircuitBreaker] = CircuitBreaker,
    ) -> None:
        self._m: _Members[VolatileBackend] = _Members("volatile", members, breaker)

    def write(self, ops: Sequence[Op], deadline: float | None = None) -> list[bool]:
        return self._m.first(lambda m: m.write(ops, deadline))

    def get(self, intent: str, key: str) -> bytes | None:
        hits = self._m.each(lambda _i, m: m.get(intent, key))
        return next((h for h in hits if h is not None), None)

    def get_stamped(self, intent: str, key: str) -> tuple[bytes, int] | None:
        hits = self._m.each(lambda _i, m: m.get_stamped(intent, key))
        return next((h for h in hits if h is not None), None)

    def get_many_stamped(self, intent: str, keys: Sequence[str]) -> list[tuple[bytes, int] | None]:
        per_member = self._m.each(lambda _i, m: m.get_many_stamped(intent, keys))
        return [
            next((h for h in hits if h is not None), None) for hits in zip(*per_member, strict=True)
        ]

    def ping(self) -> None:
        self._m.first(lambda m: m.ping())

    def close(self) -> None:
        self._m.close()

    def after_fork(self) -> None:
        self._m.after_fork()
