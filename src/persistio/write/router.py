"""Runs a save's tasks: REALTIME ones now, the rest onto the priority queues; applies on_outage.

The path of one save (or one ``save_many``), in one direction:

1. its works are turned into ops (``writes.OpBuilder``) and grouped per backend: everything bound
   for one server is one batch (a Redis gets its stream entries, volatile values and deferred
   task enqueues together);
2. each batch goes to its backend once, under that server's circuit breaker: a backend with
   asynchronous requests (Cassandra) is sent first; one that blocks runs on the calling thread
   through its ``Combiner``, where concurrent saves share the round trip; a second blocking
   server in the same stage runs on a thread of its own, so a frozen server never holds the
   others past the deadline;
3. each op's answer becomes its intent's state in the receipt: done, superseded, deferred,
   buffered (spooled for replay) or dropped.

Intents with ``on_outage="fail"`` run in a first stage, so a save that raises for them has
written nothing else. One deadline covers the whole save.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec

from persistio.backends.base import Backend, ConcurrentBackend, Op, Pending, Put, Upsert
from persistio.errors import BackendUnavailable, InDoubt, PersistioError
from persistio.events import Events
from persistio.model.declare import REGISTRY, BoundIntent, Plan
from persistio.model.intents import Priority, Tier
from persistio.model.tasks import TASK_ENCODER, SavePlan, Work
from persistio.outage.spool import Spool
from persistio.tiers.tier_set import Stores
from persistio.write.group_commit import Combiner
from persistio.write.lanes import Lanes
from persistio.write.probes import CallEnd, Probe

log = logging.getLogger("persistio.router")


class Receipt(msgspec.Struct, frozen=True):
    """What happened to each intent of one save, by intent name."""

    write_id: str
    done: tuple[str, ...] = ()  # written before save() returned
    deferred: tuple[str, ...] = ()  # on a priority queue for the workers
    buffered: tuple[str, ...] = ()  # its backend was down: in the local spool, replayed later
    dropped: tuple[str, ...] = ()  # its backend was down and on_outage="drop" (counted)
    skipped: tuple[str, ...] = ()  # its when= predicate said no
    superseded: tuple[str, ...] = ()  # written, but a newer value was already stored
    # not written although other intents of the save were: a store refused it, or it could not
    # be spooled; counted in status()["failed"] (a save never raises once anything is written)
    failed: tuple[str, ...] = ()
    # deferred intents whose queue ran past their promise, with on_lag="shed": not enqueued
    # (counted in status()["shed"])
    shed: tuple[str, ...] = ()


STATES = ("done", "deferred", "buffered", "dropped", "superseded", "failed", "shed")


class Outcome:
    """Settles each work's state (on the work itself); receipts are read back from them."""

    @staticmethod
    def mark(works: Sequence[Work], state: str) -> None:
        for w in works:
            w.state = state

    @staticmethod
    def receipt(plan: SavePlan) -> Receipt:
        states: dict[str, list[str]] = {}
        for w in plan.work:
            if w.state is not None:
                states.setdefault(w.state, []).append(w.bound.name)
        if len(states) == 1 and "done" in states:  # the common case: everything written
            return Receipt(plan.write_id, done=tuple(states["done"]), skipped=tuple(plan.skipped))
        return Receipt(
            plan.write_id,
            done=tuple(states.get("done", ())),
            deferred=tuple(states.get("deferred", ())),
            buffered=tuple(states.get("buffered", ())),
            dropped=tuple(states.get("dropped", ())),
            skipped=tuple(plan.skipped),
            superseded=tuple(states.get("superseded", ())),
            failed=tuple(states.get("failed", ())),
            shed=tuple(states.get("shed", ())),
        )


@dataclass
class Batch:
    """Everything one stage sends to one backend, and whose each op is."""

    backend: Backend
    refused: BaseException | None = None  # its tier's circuit is open: not sent at all
    ops: list[Op] = field(default_factory=list)
    works: list[Work] = field(default_factory=list)  # whose each op is
    queued: list[bool] = field(default_factory=list)  # True: a deferred task's enqueue
    bounds: dict[BoundIntent, None] = field(default_factory=dict)  # to prepare, in order

    def add(self, op: Op, work: Work, queued: bool = False) -> None:
        self.ops.append(op)
        self.works.append(work)
        self.queued.append(queued)
        if not queued:
            self.bounds[work.bound] = None


Result = list[bool] | BaseException


class Router:
    """Dispatches planned saves; shared by every thread of a store."""

    def __init__(
        self,
        stores: Stores,
        spool: Spool,
        lanes: Lanes,
        deadline: float,
        group_max: int,
        events: Events | None = None,
    ) -> None:
        self.stores = stores
        self.spool = spool
        # the models whose tasks this store runs: Persistio(models=...) narrows it
        self.plan_named: Callable[[str], Plan | None] = REGISTRY.plan_named
        self.events = events or Events()  # state changes, for logs and store.on() hooks
        self.spooling = False  # something was buffered since the spool was last drained
        self.deadline = deadline  # seconds a save waits for its REALTIME writes
        self._lanes = lanes
        self.combiners = {
            id(b): Combiner("/".join(sorted(b.tiers)), self._flusher(b), group_max)
            for b in stores.distinct()
            if not b.concurrent
        }
        self.on_buffered: Callable[[], None] = lambda: None  # the store wakes its replayer
        # metrics and tracing (probes.attach): None, the default, costs one test per save
        self.probes: tuple[Probe, ...] = ()
        self.probe: Probe | None = None
        self.pressure: Any = None  # the store's Pressure (see pressure.py): backpressure

    def after_fork(self, lanes: Lanes) -> None:
        self._lanes = lanes
        for combiner in self.combiners.values():
            combiner.after_fork()

    # -- saves ----------------------------------------------------------------------------------

    def dispatch(self, plans: Sequence[SavePlan]) -> list[Receipt]:
        probe = self.probe
        if probe is not None:
            return probe.save(plans, self._dispatch)
        return self._dispatch(plans)

    def _dispatch(self, plans: Sequence[SavePlan]) -> list[Receipt]:
        outcome = self.dispatch_works([w for p in plans for w in p.work])
        return [outcome.receipt(p) for p in plans]

    def dispatch_works(self, works: Sequence[Work]) -> Outcome:
        """REALTIME works now, the others onto their priority queues, within one deadline.

        The truth when something fails: a save raises only when nothing of it was written (then
        the exception lists the intents, none written), or when an intent that says
        ``on_outage="fail"`` could not be written (then nothing else was written, and the
        exception says which such intents were). Once anything is written, a later failure is
        reported in the receipt (``failed``) and counted, never raised: a save never raises for
        an acid write that committed.
        """
        deadline = time.monotonic() + self.deadline
        outcome = Outcome()
        failing: list[Work] = []
        now: list[Work] = []
        later: list[Work] = []
        for w in works:
            if w.bound.priority is not Priority.REALTIME:
                later.append(w)
            elif w.bound.intent.on_outage == "fail":
                failing.append(w)
            else:
                now.append(w)
        if later and self.pressure is not None:
            later = self._admitted(later)
        if failing:
            failed = self._stage(failing, [], deadline)
            if failed:
                raise _told(failed, works)
        if now or later:
            failed = self._stage(now, later, deadline)
            if failed and not any(w.state for w in works):
                raise _told(failed, works)
            for error, lost in failed:
                for w in lost:
                    w.state = "failed"
                    self.spool.bump(f"failed:{w.bound.name}")
                log.error("a save's other writes landed, but %d failed: %s", len(lost), error)
        return outcome

    def _admitted(self, later: list[Work]) -> list[Work]:
        """The deferred works to enqueue (see pressure.py): one attribute read per save unless
        a queue runs past the bound of a slow/shed intent."""
        pressure = self.pressure
        if pressure.hot:
            admitted: list[Work] = pressure.admit(later)
            return admitted
        if not pressure.running:
            pressure.start()
        return later

    def _stage(
        self, now: Sequence[Work], later: Sequence[Work], deadline: float
    ) -> list[tuple[BaseException, list[Work]]]:
        """Send one stage; settle what can be; return the errors that could not be settled,
        each with the works it left unwritten."""
        batches: dict[object, Batch] = {}
        ops = self.stores.ops
        for w in now:
            self._batch(batches, w.bound.tier).add(ops.write(w), w)
        if later:
            batch = self._batch(batches, Tier.TRANSITORY)
            for w in later:
                batch.add(ops.enqueue(w), w, queued=True)
        results = self.run(list(batches.values()), deadline)
        failed: list[tuple[BaseException, list[Work]]] = []
        for batch, result in zip(batches.values(), results, strict=True):
            error = self._settle(batch, result)
            if error is not None:
                failed.append((error, [w for w in batch.works if w.state is None]))
        return failed

    def _settle(self, batch: Batch, result: Result) -> BaseException | None:
        """Mark each work's state from its batch's answer; the error, when there is one that
        its intents' on_outage does not settle (bad data, an intent that says "fail", a spool
        that is full)."""
        if not isinstance(result, BaseException):
            for work, op, queued, took in zip(
                batch.works, batch.ops, batch.queued, result, strict=True
            ):
                if queued:
                    work.state = "deferred"
                elif took or not isinstance(op, Put | Upsert):
                    work.state = "done"
                else:
                    work.state = "superseded"
                    self.spool.bump(f"superseded:{work.bound.name}")
            return None
        if not isinstance(result, BackendUnavailable):
            return result
        own = [w for w, q in zip(batch.works, batch.queued, strict=True) if not q]
        tasks = [w for w, q in zip(batch.works, batch.queued, strict=True) if q]
        try:
            for bound, group in _by_bound(own).items():
                Outcome.mark(group, self.on_outage(bound, group, result))
            if tasks:  # the queue is down: the tasks go to the spool, replayed to their backends
                self.buffer(tasks)
                Outcome.mark(tasks, "buffered")
        except BackendUnavailable as exc:  # on_outage="fail", or the spool is full
            return exc
        return None

    def _batch(self, batches: dict[object, Batch], tier: Tier) -> Batch:
        """The batch for ``tier``'s backend; a tier whose circuit is open gets one of its own
        that is refused without being sent (its server may be shared with healthy tiers)."""
        backend = self.stores.by_tier[tier]
        breaker = self.stores.breakers[tier]
        key: object = id(backend)
        if breaker.is_open():
            key = tier
        batch = batches.get(key)
        if batch is None:
            refused = breaker.refused() if key is tier else None
            batch = batches[key] = Batch(backend, refused)
        return batch

    # -- sending --------------------------------------------------------------------------------

    def run(self, batches: Sequence[Batch], deadline: float) -> list[Result]:
        """Send each batch to its backend once; an answer or an exception per batch.

        Asynchronous backends are sent first; the first blocking one runs on this thread; any
        other blocking one on a lane, so each is bounded by the deadline on its own.
        """
        results: list[Result | None] = [None] * len(batches)
        pending: dict[int, Pending] = {}
        lanes: dict[int, Future[list[bool]]] = {}
        inline: int | None = None
        ends = self._call_ends(batches)
        for i, batch in enumerate(batches):
            if batch.refused is not None:
                results[i] = batch.refused
            elif batch.backend.concurrent:
                started = self._call(_bind(self._start, batch, deadline))
                if isinstance(started, BaseException):
                    results[i] = started
                    _end(ends[i], started)
                else:
                    pending[i] = started
            elif inline is None:
                inline = i
            else:
                send = _ending(_bind(self._send, batch, deadline), ends[i])
                future = self._lanes.submit(min(batch.backend.tiers), send, deadline)
                if future is None:
                    results[i] = BackendUnavailable(f"{_name(batch)} backend: every call is stuck")
                    _end(ends[i], results[i])
                else:
                    lanes[i] = future
        if inline is not None:
            send = _ending(_bind(self._send, batches[inline], deadline), ends[inline])
            results[inline] = self._call(send)
        for i, future in lanes.items():
            results[i] = self._overdue(batches[i], self._call(_bind(_within, future, deadline)))
        for i, waiting in pending.items():
            finish = _ending(_bind(self._finish, batches[i], waiting, deadline), ends[i])
            results[i] = self._call(finish)
        return [r if r is not None else [] for r in results]

    def _call_ends(self, batches: Sequence[Batch]) -> list[CallEnd | None]:
        """A probe's end of each backend call (None for every call when no probe is set)."""
        probe = self.probe
        if probe is None:
            return [None] * len(batches)
        return [
            None if b.refused is not None else probe.backend_call(_name(b), len(b.ops))
            for b in batches
        ]

    def _overdue(self, batch: Batch, result: Result) -> Result:
        """A lane that missed the deadline counts against its tiers' breakers."""
        if not isinstance(result, _Overdue):
            return result
        for breaker in self.stores.breakers_of(batch.ops):
            breaker.failure()
        return BackendUnavailable(f"{_name(batch)} backend did not answer within {self.deadline}s")

    @staticmethod
    def _call(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as exc:
            return exc

    def _send(self, batch: Batch, deadline: float) -> list[bool]:
        self._prepare(batch)
        return self.combiners[id(batch.backend)].submit(batch.ops, deadline)

    def _prepare(self, batch: Batch) -> None:
        for bound in batch.bounds:
            if (bound.tier, bound.name) not in self.stores.ready:
                with self.stores.guard(bound.tier):
                    self.stores.prepare(bound)

    def _start(self, batch: Batch, deadline: float) -> Pending:
        self._prepare(batch)
        return cast(ConcurrentBackend, batch.backend).write_async(batch.ops, deadline)

    def _finish(self, batch: Batch, waiting: Pending, deadline: float) -> list[bool]:
        with self.stores.guard_ops(batch.ops):
            return waiting.result(max(0.001, deadline - time.monotonic()))

    def _flusher(self, backend: Backend) -> Callable[[Sequence[Op], float], list[bool]]:
        stores = self.stores

        def flush(ops: Sequence[Op], deadline: float) -> list[bool]:
            with stores.guard_ops(ops):
                return backend.write(ops, deadline)

        return flush

    # -- outages --------------------------------------------------------------------------------

    def buffer(self, works: Sequence[Work]) -> None:
        self.spool.add([(w.bound.tier.value, TASK_ENCODER.encode(w.task)) for w in works])
        if not self.spooling:
            self.spooling = True
            tiers = sorted({w.bound.tier.value for w in works})
            self.events.emit("spool_started", tiers=tiers, items=len(works))
        self.on_buffered()

    def on_outage(
        self, bound: BoundIntent, works: Sequence[Work], cause: BaseException | None = None
    ) -> str:
        """Buffer or drop writes whose backend is down; return the state they ended in."""
        if bound.intent.on_outage == "buffer":
            self.buffer(works)
            return "buffered"
        if bound.intent.on_outage == "drop":
            self.spool.bump(f"dropped:{bound.tier.value}:{bound.name}", len(works))
            return "dropped"
        if isinstance(cause, InDoubt):
            raise InDoubt(f"intent {bound.name!r} (on_outage='fail'): {cause}", tier=cause.tier)
        raise BackendUnavailable(
            f"{bound.tier} backend is unavailable and intent {bound.name!r} has on_outage='fail'",
            tier=bound.tier.value,
        )

    # -- workers, replay ------------------------------------------------------------------------

    def apply(self, works: Sequence[Work], deadline: float | None = None) -> list[Result]:
        """Write ``works`` to their own stores, one batch per backend; a result per work.

        Deferred tasks, spool replay and the outbox come through here: the same ops as a save.
        """
        deadline = time.monotonic() + self.deadline if deadline is None else deadline
        batches: dict[object, Batch] = {}
        where: list[tuple[int, int]] = []
        for w in works:
            batch = self._batch(batches, w.bound.tier)
            where.append((id(batch), len(batch.ops)))
            batch.add(self.stores.ops.write(w), w)
        sent = list(batches.values())
        results = dict(zip(map(id, sent), self.run(sent, deadline), strict=True))
        out: list[Result] = []
        for work, (key, index) in zip(works, where, strict=True):
            result = results[key]
            if isinstance(result, BaseException):
                out.append(result)
                continue
            if not result[index] and work.bound.tier in (Tier.ACID, Tier.VOLATILE):
                # a deferred or replayed write that a newer stored value beat: counted
                self.spool.bump(f"superseded:{work.bound.name}")
            out.append([result[index]])
        return out


def _told(
    failed: Sequence[tuple[BaseException, Sequence[Work]]], works: Sequence[Work]
) -> BaseException:
    """The first error, saying which intents of the save were written, which were not, and
    which are in doubt (sent, the answer lost)."""
    error = failed[0][0]
    if isinstance(error, PersistioError):
        doubt = {w.bound.name for e, lost in failed if isinstance(e, InDoubt) for w in lost}
        written = tuple(sorted({w.bound.name for w in works if w.state} - doubt))
        error.written = written
        error.in_doubt = tuple(sorted(doubt))
        error.not_written = tuple(sorted({w.bound.name for w in works} - set(written) - doubt))
        if doubt:
            error.args = (f"{error}; in doubt: {sorted(doubt)}; written: {list(written)}",)
        elif isinstance(error, BackendUnavailable) and not written:
            error.args = (f"{error}; nothing of this save was written",)
        elif isinstance(error, BackendUnavailable):
            error.args = (f"{error}; written: {list(written)}",)
    return error


def _bind(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    return lambda: fn(*args)


def _ending(call: Callable[[], Any], end: CallEnd | None) -> Callable[[], Any]:
    """``call``, telling ``end`` (a probe's) how it ended, on the thread that ran it."""
    if end is None:
        return call

    def run() -> Any:
        try:
            result = call()
        except BaseException as exc:
            end(exc)
            raise
        end(None)
        return result

    return run


def _end(end: CallEnd | None, error: Any) -> None:
    if end is not None:
        end(error if isinstance(error, BaseException) else None)


def _name(batch: Batch) -> str:
    return "/".join(sorted(batch.backend.tiers))


def isolated(router: Router, works: Sequence[Work]) -> list[BaseException | None]:
    """Each work's error, if any. A store that refuses a batch for bad data refuses all of it:
    the batch is then re-sent one work at a time, so one poison task never fails the others."""
    results = router.apply(works)
    out: list[BaseException | None] = []
    for work, result in zip(works, results, strict=True):
        if not isinstance(result, BaseException):
            out.append(None)
        elif isinstance(result, BackendUnavailable) or len(works) == 1:
            out.append(result)
        else:
            (alone,) = router.apply([work])
            out.append(alone if isinstance(alone, BaseException) else None)
    return out


class _Overdue(Exception):
    """A lane call did not finish by the deadline."""


def _within(future: Future[list[bool]], deadline: float) -> list[bool]:
    try:
        return future.result(timeout=max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        raise _Overdue from None


def _by_bound(works: Sequence[Work]) -> dict[BoundIntent, list[Work]]:
    groups: dict[BoundIntent, list[Work]] = {}
    for w in works:
        groups.setdefault(w.bound, []).append(w)
    return groups


__all__ = ["STATES", "Outcome", "Receipt", "Router", "Tier"]
