"""Dead letters you can act on: list them, read one, put them back, or delete them.

Three places hold them: each transitory intent's stream (items its consumer kept failing), the
task queues (deferred tasks that kept failing), and the local spool (replays refused for a reason
other than an outage). Each dead letter has one id that says where it lives
(``stream:notify/1700000000000-0``, ``queue:high/...``, ``spool/42``; a partitioned stream's
places are ``stream:notify.0``, ``stream:notify.1`` ...) and carries its reason,
attempts, times, and a short summary of what it would have written. Every place keeps its dead
letters bounded (by count and age, see ``StreamSpec``); what is dropped to keep the bound is
counted in ``status()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import msgspec

from persistio.backends.base import GROUP_MARK, DeadEntry, StreamSpec
from persistio.errors import ValidationError
from persistio.model.declare import REGISTRY, BoundIntent
from persistio.model.intents import Tier
from persistio.model.tasks import TASK_DECODER, Task
from persistio.outage.spool import DeadTask, Spool
from persistio.tiers.tier_set import Stores

SUMMARY = 200  # characters of the decoded object shown


class DeadLetter(msgspec.Struct, frozen=True):
    """One item set aside after it kept failing."""

    id: str  # where it lives and its id there: pass it to redrive() / purge()
    place: str  # "stream:<intent>", "queue:<priority>" or "spool"
    intent: str
    model: str
    write_id: str
    reason: str
    attempts: int
    enqueued_at: float  # epoch seconds
    first_failed_at: float
    failed_at: float
    summary: str  # what it would have written, decoded when the model is known


@dataclass(frozen=True)
class Place:
    name: str  # "stream:notify" or "queue:high"
    spec: StreamSpec
    bound: BoundIntent | None  # the intent of a stream; None for a task queue


class DeadLetters:
    def __init__(self, stores: Stores, spool: Spool, streams: Callable[[], list[BoundIntent]]):
        self._stores = stores
        self._spool = spool
        self._streams = streams

    def places(self) -> list[Place]:
        """Every stream partition and task queue partition: ``stream:<intent>`` and
        ``queue:<priority>``, with ``.<partition>`` after them when there are several."""
        found = [
            Place(
                # a consumer group's stream is named by itself (<intent>[.<partition>]~<name>)
                f"stream:{spec.name}"
                if GROUP_MARK in spec.name
                else _named(f"stream:{b.name}", i, len(specs)),
                spec,
                b,
            )
            for b in self._streams()
            for specs in (self._stores.ops.streams(b),)
            for i, spec in enumerate(specs)
        ]
        found += [
            Place(_named(f"queue:{p.name.lower()}", i, len(queue)), spec, None)
            for p, queue in self._stores.queues.items()
            for i, spec in enumerate(queue)
        ]
        return found

    def list(self, intent: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, oldest first per place (``intent`` narrows them to one intent)."""
        out: list[DeadLetter] = []
        for letter in self._all(limit=max(limit, 1) if intent is None else 100_000):
            if intent is None or letter.intent == intent:
                out.append(letter)
                if len(out) >= limit:
                    break
        return out

    def _all(self, limit: int) -> Iterator[DeadLetter]:
        transitory = self._stores.transitory
        for place in self.places():
            with self._stores.guard(Tier.TRANSITORY):
                entries = transitory.dead_letters(place.spec, limit)
            for entry in entries:
                yield _from_entry(place, entry)
        for task in self._spool.dead(limit):
            yield _from_spool(task)

    def redrive(self, ids: Sequence[str] | None = None, intent: str | None = None) -> int:
        """Put dead letters back where they came from: a stream's items to their consumer, a
        queue's tasks to the workers, spooled tasks to the spool's replay. How many."""
        return self._act(ids, intent, redrive=True)

    def purge(self, ids: Sequence[str] | None = None, intent: str | None = None) -> int:
        """Delete dead letters for good; how many (counted in ``status()``)."""
        n = self._act(ids, intent, redrive=False)
        self._spool.bump("dead_letters_purged", n)
        return n

    def _act(self, ids: Sequence[str] | None, intent: str | None, *, redrive: bool) -> int:
        if ids is None and intent is not None:
            ids = [d.id for d in self.list(intent, limit=100_000)]
        chosen = _by_place(ids)
        transitory = self._stores.transitory
        done = 0
        for place in self.places():
            if ids is not None and place.name not in chosen:
                continue
            inner = None if ids is None else chosen[place.name]
            with self._stores.guard(Tier.TRANSITORY):
                if redrive:
                    done += transitory.redrive(place.spec, inner, 100_000)
                else:
                    done += transitory.purge(place.spec, inner)
        if ids is None or "spool" in chosen:
            seqs = None if ids is None else [int(s) for s in chosen["spool"]]
            done += self._spool.redrive(seqs) if redrive else self._spool.purge(seqs)
        return done


def _named(place: str, index: int, partitions: int) -> str:
    return place if partitions == 1 else f"{place}.{index}"


def _by_place(ids: Sequence[str] | None) -> dict[str, list[str]]:
    chosen: dict[str, list[str]] = {}
    for dead_id in ids or ():
        place, sep, inner = dead_id.rpartition("/")
        if not sep or not place or not inner:
            raise ValidationError(
                f"dead letter id {dead_id!r}: expected <place>/<id>, e.g. 'spool/42' or "
                "'queue:high/1700000000000-0' (see dead_letters())"
            )
        chosen.setdefault(place, []).append(inner)
    return chosen


def _summary(bound: BoundIntent | None, payload: bytes) -> str:
    if bound is None:
        return f"<{len(payload)} bytes>"
    try:
        text = repr(bound.codec.decode(payload))
    except (msgspec.DecodeError, msgspec.ValidationError):
        return f"<{len(payload)} bytes that no longer decode as {bound.stored.__qualname__}>"
    return text if len(text) <= SUMMARY else text[: SUMMARY - 1] + "…"


def _task_fields(payload: bytes) -> tuple[Task | None, BoundIntent | None]:
    try:
        task = TASK_DECODER.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None, None
    plan = REGISTRY.plan_named(task.model)
    bound = None if plan is None else plan.by_name.get(task.intent)
    return task, bound


def _from_entry(place: Place, entry: DeadEntry) -> DeadLetter:
    if place.bound is not None:  # an intent's stream: the payload is the object itself
        write_id = entry.item_id.partition(":")[0]
        return DeadLetter(
            f"{place.name}/{entry.id}",
            place.name,
            place.bound.name,
            f"{place.bound.model.__module__}:{place.bound.model.__qualname__}",
            write_id,
            entry.reason,
            entry.deliveries,
            entry.enqueued_at,
            entry.first_failed_at,
            entry.dead_at,
            _summary(place.bound, entry.payload),
        )
    task, bound = _task_fields(entry.payload)
    return DeadLetter(
        f"{place.name}/{entry.id}",
        place.name,
        task.intent if task else "?",
        task.model if task else "?",
        task.write_id if task else entry.item_id,
        entry.reason,
        entry.deliveries,
        entry.enqueued_at,
        entry.first_failed_at,
        entry.dead_at,
        _summary(bound, task.payload) if task else f"<{len(entry.payload)} undecodable bytes>",
    )


def _from_spool(dead: DeadTask) -> DeadLetter:
    task, bound = _task_fields(dead.task)
    return DeadLetter(
        f"spool/{dead.seq}",
        "spool",
        task.intent if task else "?",
        task.model if task else "?",
        task.write_id if task else "?",
        dead.reason,
        dead.attempts,
        dead.spooled_at,
        dead.spooled_at,
        dead.dead_at,
        _summary(bound, task.payload) if task else f"<{len(dead.task)} undecodable bytes>",
    )
