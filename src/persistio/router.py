"""Runs a save's tasks: REALTIME ones now, the rest onto the priority queues; applies on_outage."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

import msgspec

from .backends.base import QueueItem
from .errors import BackendUnavailable
from .intents import Priority, Tier
from .lanes import Lanes
from .model import BoundIntent
from .plan import TASK_ENCODER, SavePlan, Work
from .spool import Spool
from .writes import Backends, apply, group_by_intent


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


K = TypeVar("K", bound=Hashable)


class Job(NamedTuple):
    tier: Tier  # whose breaker a missed deadline counts against
    call: Callable[[], None]


class Router:
    """Dispatches planned saves; shared by every thread of a store."""

    def __init__(self, backends: Backends, spool: Spool, lanes: Lanes, deadline: float) -> None:
        self.backends = backends
        self.spool = spool
        self.deadline = deadline  # seconds a save waits for its REALTIME writes
        self._lanes = lanes
        self.on_buffered: Callable[[], None] = lambda: None  # the store wakes its replayer

    def dispatch(self, plans: Sequence[SavePlan]) -> list[Receipt]:
        outcome = self.dispatch_works([w for p in plans for w in p.work])
        return [outcome.receipt(p) for p in plans]

    def dispatch_works(self, works: Sequence[Work]) -> Outcome:
        """REALTIME works now, the others onto their priority queues, each bounded by the
        REALTIME deadline.

        Intents that fail the save on an outage go first, so a save that raises
        BackendUnavailable has written nothing else; then the other REALTIME intents and the
        deferred enqueues run together.
        """
        outcome = Outcome()
        groups = group_by_intent(w for w in works if w.bound.priority is Priority.REALTIME)
        failing = {b: ws for b, ws in groups.items() if b.intent.on_outage == "fail"}
        for bound, error in self._run({b: self._writer(b, ws) for b, ws in failing.items()}):
            if error is not None:
                raise error
            outcome.mark(failing[bound], "done")
        deferred: dict[Priority, list[Work]] = {}
        for w in works:
            if w.bound.priority is not Priority.REALTIME:
                deferred.setdefault(w.bound.priority, []).append(w)
        jobs: dict[BoundIntent | Priority, Job] = {
            b: self._writer(b, ws) for b, ws in groups.items() if b not in failing
        }
        jobs.update({p: self._enqueuer(p, ws) for p, ws in deferred.items()})
        for key, error in self._run(jobs):
            done = groups[key] if isinstance(key, BoundIntent) else deferred[key]
            if error is None:
                outcome.mark(done, "done" if isinstance(key, BoundIntent) else "deferred")
            elif not isinstance(error, BackendUnavailable):
                raise error
            elif isinstance(key, BoundIntent):
                outcome.mark(done, self.on_outage(key, done))
            else:  # the queue is down: the tasks go to the spool, replayed to their backends
                self.spool.add([(w.bound.tier.value, TASK_ENCODER.encode(w.task)) for w in done])
                self.on_buffered()
                outcome.mark(done, "buffered")
        return outcome

    def _writer(self, bound: BoundIntent, works: list[Work]) -> Job:
        return Job(bound.tier, lambda: apply(self.backends, bound, works))

    def _enqueuer(self, priority: Priority, works: list[Work]) -> Job:
        items = [QueueItem(w.dedup_key, TASK_ENCODER.encode(w.task)) for w in works]

        def enqueue() -> None:
            with self.backends.guard(Tier.TRANSITORY):
                self.backends.transitory.enqueue(self.backends.queues[priority], items)

        return Job(Tier.TRANSITORY, enqueue)

    def _run(self, jobs: Mapping[K, Job]) -> list[tuple[K, BaseException | None]]:
        """Run the jobs, each on its tier's lane; one that misses the deadline counts as its
        backend being down.

        One job whose backend bounds its own calls by the deadline (a socket or request
        timeout) runs on the calling thread instead: a thread handoff costs more than a Redis
        round trip. A write that missed the deadline may still land later: harmless for every
        idempotent write, and the acid backend rolls back rather than commit work that came
        back too late.
        """
        if not jobs:
            return []
        deadline = time.monotonic() + self.deadline
        results: dict[K, BaseException | None] = {}
        futures: dict[K, Future[None]] = {}
        runnable = []
        for key, job in jobs.items():
            if self.backends.breakers[job.tier].is_open():
                results[key] = BackendUnavailable(f"{job.tier} backend: circuit open")
            else:
                runnable.append((key, job))
        inline = next(
            (i for i, (_, job) in enumerate(runnable) if job.tier in self.backends.self_bounded),
            None,
        )
        here = runnable.pop(inline) if inline is not None else None
        for key, job in runnable:
            future = self._lanes.submit(job.tier, job.call, deadline)
            if future is None:
                results[key] = BackendUnavailable(f"{job.tier} backend: every call is stuck")
            else:
                futures[key] = future
        if here is not None:
            try:
                here[1].call()
                results[here[0]] = None
            except Exception as exc:
                results[here[0]] = exc
        wait(futures.values(), timeout=max(0.0, deadline - time.monotonic()))
        for key, future in futures.items():
            if future.done():
                results[key] = future.exception()
                continue
            tier = jobs[key].tier
            self.backends.breakers[tier].failure()
            results[key] = BackendUnavailable(
                f"{tier} backend did not answer within {self.deadline}s"
            )
        return [(key, results[key]) for key in jobs]

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
