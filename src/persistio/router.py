"""Runs a save's tasks: REALTIME ones now, the rest onto the priority queues; applies on_outage."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import msgspec

from .backends.base import QueueItem
from .errors import BackendUnavailable
from .intents import Priority, Tier
from .model import BoundIntent
from .plan import TASK_ENCODER, SavePlan, Work
from .spool import Spool
from .writes import TASK_QUEUES, Backends, apply, group_by_intent


class Receipt(msgspec.Struct, frozen=True):
    """What happened to each intent of one save, by intent name."""

    write_id: str
    done: tuple[str, ...] = ()  # written before save() returned
    deferred: tuple[str, ...] = ()  # on a priority queue for the workers
    buffered: tuple[str, ...] = ()  # its backend was down: in the local spool, replayed later
    dropped: tuple[str, ...] = ()  # its backend was down and on_outage="drop" (counted)
    skipped: tuple[str, ...] = ()  # its when= predicate said no


@dataclass
class Outcome:
    """Intent states per write id, filled in while a batch of saves is dispatched."""

    states: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def mark(self, works: Sequence[Work], state: str) -> None:
        for w in works:
            self.states.setdefault(w.task.write_id, {}).setdefault(state, []).append(w.bound.name)

    def receipt(self, plan: SavePlan) -> Receipt:
        s = self.states.get(plan.write_id, {})
        return Receipt(
            plan.write_id,
            done=tuple(s.get("done", ())),
            deferred=tuple(s.get("deferred", ())),
            buffered=tuple(s.get("buffered", ())),
            dropped=tuple(s.get("dropped", ())),
            skipped=tuple(plan.skipped),
        )


class Router:
    """Dispatches planned saves; shared by every thread of a store."""

    def __init__(
        self, backends: Backends, spool: Spool, pool: ThreadPoolExecutor, deadline: float
    ) -> None:
        self.backends = backends
        self.spool = spool
        self.deadline = deadline  # seconds a save waits for its REALTIME writes
        self._pool = pool
        self.on_buffered: Callable[[], None] = lambda: None  # the store wakes its replayer

    def dispatch(self, plans: Sequence[SavePlan]) -> list[Receipt]:
        outcome = self.dispatch_works([w for p in plans for w in p.work])
        return [outcome.receipt(p) for p in plans]

    def dispatch_works(self, works: Sequence[Work]) -> Outcome:
        """REALTIME works now, the others onto their priority queues."""
        outcome = Outcome()
        self.run_now([w for w in works if w.bound.priority is Priority.REALTIME], outcome)
        self.defer([w for w in works if w.bound.priority is not Priority.REALTIME], outcome)
        return outcome

    def run_now(self, works: Sequence[Work], outcome: Outcome) -> None:
        """Write now, concurrently per intent, each bounded by the REALTIME deadline.

        Intents that fail the save on an outage go first, so a save that raises
        BackendUnavailable has written nothing else.
        """
        groups = group_by_intent(works)
        failing = {b: ws for b, ws in groups.items() if b.intent.on_outage == "fail"}
        for bound, error in self._run_groups(failing).items():
            if error is not None:
                raise error
            outcome.mark(failing[bound], "done")
        rest = {b: ws for b, ws in groups.items() if b not in failing}
        for bound, error in self._run_groups(rest).items():
            if error is None:
                outcome.mark(rest[bound], "done")
            elif isinstance(error, BackendUnavailable):
                outcome.mark(rest[bound], self.on_outage(bound, rest[bound]))
            else:
                raise error

    def _run_groups(
        self, groups: dict[BoundIntent, list[Work]]
    ) -> dict[BoundIntent, BaseException | None]:
        """Apply each intent's batch on the pool; one that misses the deadline counts as down.

        A write that missed the deadline may still land later: harmless, since every write is
        idempotent and resolved by its write timestamp.
        """
        if not groups:
            return {}
        futures = {b: self._pool.submit(apply, self.backends, b, ws) for b, ws in groups.items()}
        wait(futures.values(), timeout=self.deadline)
        results: dict[BoundIntent, BaseException | None] = {}
        for bound, future in futures.items():
            if future.done():
                results[bound] = future.exception()
                continue
            self.backends.breakers[bound.tier].failure()
            results[bound] = BackendUnavailable(
                f"{bound.tier} backend did not answer within {self.deadline}s", tier=bound.tier
            )
        return results

    def on_outage(self, bound: BoundIntent, works: Sequence[Work]) -> str:
        """Buffer or drop writes whose backend is down; return the state they ended in."""
        if bound.intent.on_outage == "buffer":
            self.spool.add([(w.bound.tier.value, TASK_ENCODER.encode(w.task)) for w in works])
            self.on_buffered()
            return "buffered"
        if bound.intent.on_outage == "drop":
            self.spool.bump(f"dropped:{bound.tier.value}:{bound.name}", len(works))
            return "dropped"
        raise BackendUnavailable(
            f"{bound.tier} backend is unavailable and intent {bound.name!r} has on_outage='fail'",
            tier=bound.tier.value,
        )

    def defer(self, works: Sequence[Work], outcome: Outcome) -> None:
        """Enqueue deferred tasks per priority; if the queue is down, spool them instead."""
        by_priority: dict[Priority, list[Work]] = {}
        for w in works:
            by_priority.setdefault(w.bound.priority, []).append(w)
        for priority, group in by_priority.items():
            items = [QueueItem(w.dedup_key, TASK_ENCODER.encode(w.task)) for w in group]
            try:
                with self.backends.guard(Tier.TRANSITORY):
                    self.backends.transitory.enqueue(TASK_QUEUES[priority], items)
            except BackendUnavailable:
                self.spool.add(
                    [
                        (w.bound.tier.value, item.payload)
                        for w, item in zip(group, items, strict=True)
                    ]
                )
                self.on_buffered()
                outcome.mark(group, "buffered")
            else:
                outcome.mark(group, "deferred")
