"""Runs deferred tasks (highest priority first), registered consumers, spool replay and the outbox.

One ``step()`` takes at most one batch from the highest non-empty priority queue, so a backlog of
LOW work never delays HIGH work by more than one poll; within a batch, tasks run earliest
deadline (save time + their intent's ``within``) first, and a NORMAL or LOW batch is run in
slices, between which HIGH (or NORMAL) work that has arrived runs first (preemption at task
boundaries). A partitioned queue or stream is claimed
from partition after partition, starting one further on at each step (round robin), so every
partition is served and HIGH work in any partition still comes before NORMAL work in all of
them. Any number of worker processes share the partitions: each entry goes to one of them, and
one a dead worker had claimed is handed out again after its visibility timeout.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from persistio.backends.base import Delivery, StreamSpec
from persistio.errors import BackendUnavailable
from persistio.model.declare import BoundIntent
from persistio.model.intents import Priority, Tier
from persistio.model.tasks import TASK_DECODER, UnknownModel, Work, work_from_task
from persistio.tiers.op_builder import Streams
from persistio.work.delivery import Delivery as ConsumerDelivery
from persistio.work.replay import Replay
from persistio.write.router import Router, isolated

log = logging.getLogger("persistio.worker")
PRUNE_EVERY = 300.0  # seconds between looks for consumers of gone worker processes
CONSUMER_IDLE = 3600.0  # a consumer idle this long and holding nothing is forgotten

Handler = Callable[..., Any]  # handler(obj) or handler(obj, delivery)
CoroutineRunner = Callable[[Coroutine[Any, Any, Any]], Any]


@dataclass(frozen=True)
class Consumer:
    bound: BoundIntent
    streams: Streams  # its intent's partitions
    handler: Handler
    batch: int
    with_delivery: bool = False  # the handler takes (obj, Delivery)
    group: str | None = None  # its name, one of the intent's declared consumers


def backoff(deliveries: int, base: float = 0.2, cap: float = 30.0) -> float:
    """Seconds before a failed item is handed out again: exponential in its delivery count."""
    return float(min(cap, base * 2 ** max(0, deliveries - 1)))


class Worker:
    """The deferred half of persistio, run by ``drain()``, ``run_worker()`` and the CLI."""

    def __init__(
        self, router: Router, *, batch: int = 256, unknown_model_grace: float = 600.0
    ) -> None:
        self.router = router
        self.batch = batch
        self.consumers: dict[str, Consumer] = {}
        self.run_coroutine: CoroutineRunner = asyncio.run
        self.name = f"{socket.gethostname()}-{os.getpid()}"
        self.replay = Replay(router, batch, unknown_model_grace)
        self._turn = 0  # where the next round robin over partitions starts
        self.preempt_every = 64  # tasks of a NORMAL/LOW batch between looks for higher work
        self.promises: Any = None  # the store's Promises: lag against each intent's within
        self._next_prune = time.monotonic() + PRUNE_EVERY

    @property
    def _backends(self) -> Any:
        return self.router.stores

    def after_fork(self) -> None:
        """In a child process: a consumer name of its own (it holds the pid)."""
        self.name = f"{socket.gethostname()}-{os.getpid()}"
        self.replay.after_fork()

    def prune(self) -> bool:
        """Now and then, forget the consumers of gone worker processes (see PRUNE_EVERY)."""
        now = time.monotonic()
        prune = getattr(self._backends.transitory, "prune_consumers", None)
        if prune is None or now < self._next_prune:
            return False
        self._next_prune = now + PRUNE_EVERY
        streams = [
            *self._backends.all_queues(),
            *(s for c in self.consumers.values() for s in c.streams),
        ]
        with self._backends.guard(Tier.TRANSITORY):
            removed = sum(prune(s, CONSUMER_IDLE) for s in streams)
        if removed:
            self.router.spool.bump("consumers_pruned", removed)
        return False  # bookkeeping: never counts as work done

    def consumer_name(self) -> str:
        return f"{self.name}-{threading.get_ident()}"

    def step(self, outbox_age: float = 5.0) -> bool:
        """One round of every kind of work; True when anything was done."""
        progressed = False
        for part in (
            lambda: self.replay.outbox(outbox_age),
            self.replay.spool,
            self.prune,
            self.run_deferred,
            *(lambda c=c: self.run_consumer(c) for c in list(self.consumers.values())),
        ):
            try:
                progressed = part() or progressed
            except BackendUnavailable as exc:
                # a backend is down: the other parts go on; this one is retried next poll
                log.debug("worker step skipped a part: %s", exc)
            except Exception:
                # a worker survives anything one part raises: counted, logged, retried next poll
                self.router.spool.bump("worker_errors")
                log.exception("worker step: a part failed; the others go on")
        return progressed

    # -- deferred tasks -------------------------------------------------------------------------

    def _rotated(self, streams: Streams) -> Streams:
        """The partitions, starting one further on at each call (round robin)."""
        if len(streams) == 1:
            return streams
        self._turn += 1
        start = self._turn % len(streams)
        return streams[start:] + streams[:start]

    def run_deferred(self) -> bool:
        """One batch from the highest priority with work, whichever partition holds it."""
        for priority, queue in self._backends.queues.items():
            if self._run_one(priority, queue):
                return True
        return False

    def _run_one(self, priority: Priority, queue: Streams) -> bool:
        for stream in self._rotated(queue):
            with self._backends.guard(Tier.TRANSITORY):
                deliveries = self._backends.transitory.claim(
                    stream, self.consumer_name(), self.batch
                )
            if deliveries:
                self._run_tasks(stream, deliveries, priority)
                return True
        return False

    def _preempt(self, priority: Priority, until: float) -> None:
        """Between slices of a lower-priority batch: run what has arrived above it first, until
        the batch's claim is half way to its visibility timeout (past that, another worker would
        take the batch over while this one still holds it)."""
        for higher, queue in self._backends.queues.items():
            if higher >= priority:
                return
            while time.monotonic() < until and self._run_one(higher, queue):
                pass

    def _run_tasks(
        self, stream: StreamSpec, deliveries: Sequence[Delivery], priority: Priority | None = None
    ) -> None:
        """Apply a batch of tasks, earliest deadline first, one round trip per store per slice;
        ack what is done. A NORMAL or LOW batch yields to higher work between slices."""
        works: list[Work] = []
        taken: list[Delivery] = []
        for d in deliveries:
            try:
                work = work_from_task(TASK_DECODER.decode(d.payload), self.router.plan_named)
            except UnknownModel as exc:  # retried: a worker that knows the model may take it
                self.replay._unknown_model(exc)
                self._failed(stream, d, exc, quiet=True)
                continue
            except ValueError as exc:  # undecodable: no retry will ever read it
                self._failed(stream, d, exc, final=True)
                continue
            works.append(work)
            taken.append(d)
        # one queue holds intents with different promises: the earliest deadline goes first
        order = sorted(range(len(works)), key=lambda i: _deadline_us(works[i]))
        until = time.monotonic() + stream.visibility_seconds / 2
        step = len(order) or 1
        if priority is not None and priority > Priority.HIGH:
            step = max(1, self.preempt_every)
        for start in range(0, len(order), step):
            if start:
                self._preempt(priority or Priority.LOW, until)
            part = order[start : start + step]
            self._run_slice(stream, [works[i] for i in part], [taken[i] for i in part], priority)

    def _run_slice(
        self,
        stream: StreamSpec,
        works: Sequence[Work],
        taken: Sequence[Delivery],
        priority: Priority | None,
    ) -> None:
        began = time.perf_counter()
        done: list[str] = []
        written: list[Work] = []
        outages: dict[BoundIntent, list[tuple[Work, Delivery]]] = {}
        for work, d, error in self._apply(works, taken):
            if error is None:
                done.append(d.id)
                written.append(work)
            elif isinstance(error, BackendUnavailable):
                outages.setdefault(work.bound, []).append((work, d))
            else:
                self._failed(stream, d, error)
        for bound, group in outages.items():
            if bound.intent.on_outage == "fail":
                for _, d in group:
                    self._retry(stream, d, "backend unavailable")
                continue
            self.router.on_outage(bound, [w for w, _ in group])  # buffered or dropped
            done.extend(d.id for _, d in group)
        if done:
            with self._backends.guard(Tier.TRANSITORY):
                self._backends.transitory.ack(stream, done)
        if priority is not None:
            level = priority.name.lower()
            self.router.spool.bump(f"served:{level}", len(done))
            self.router.spool.bump(f"busy_us:{level}", int((time.perf_counter() - began) * 1e6))
        if written and self.promises is not None:
            self.promises.done(written)

    def _apply(
        self, works: Sequence[Work], deliveries: Sequence[Delivery]
    ) -> list[tuple[Work, Delivery, BaseException | None]]:
        """Each work with its error, if any (see ``router.isolated``)."""
        probe = self.router.probe
        if probe is None:
            errors = isolated(self.router, works)
        else:
            errors = probe.tasks("deferred", works, lambda ws: isolated(self.router, ws))
        return list(zip(works, deliveries, errors, strict=True))

    # -- consumers ------------------------------------------------------------------------------

    def run_consumer(self, consumer: Consumer) -> bool:
        """Up to ``consumer.batch`` items, from its partitions in turn; each acked once handled."""
        transitory = self._backends.transitory
        claimed: list[tuple[StreamSpec, list[Delivery]]] = []
        wanted = consumer.batch
        for stream in self._rotated(consumer.streams):
            with self._backends.guard(Tier.TRANSITORY):
                deliveries = transitory.claim(stream, self.consumer_name(), wanted)
            if deliveries:
                claimed.append((stream, deliveries))
                wanted -= len(deliveries)
                if wanted <= 0:
                    break
        for stream, deliveries in claimed:
            self._handle(consumer, stream, deliveries)
        return bool(claimed)

    def _handle(self, consumer: Consumer, stream: StreamSpec, deliveries: list[Delivery]) -> None:
        acked: list[str] = []
        for d in deliveries:
            try:
                obj = consumer.bound.codec.decode(d.payload)
            except ValueError as exc:  # undecodable, or no longer fits the model: set aside
                self._failed(stream, d, exc, final=True)
                continue
            try:
                if consumer.with_delivery:
                    write_id, _, intent = d.dedup.partition(":")
                    info = ConsumerDelivery(
                        write_id, intent or consumer.bound.name, d.deliveries, d.enqueued_at
                    )
                    result = consumer.handler(obj, info)
                else:
                    result = consumer.handler(obj)
                if inspect.iscoroutine(result):
                    self.run_coroutine(result)
            except Exception as exc:
                self._failed(stream, d, exc)
            else:
                acked.append(d.id)
        if acked:
            with self._backends.guard(Tier.TRANSITORY):
                self._backends.transitory.ack(stream, acked)

    # -- failures -------------------------------------------------------------------------------

    def _failed(
        self,
        stream: StreamSpec,
        delivery: Delivery,
        exc: BaseException,
        *,
        final: bool = False,
        quiet: bool = False,
    ) -> None:
        """Retry the item later, or (at its last delivery, or ``final``) dead-letter it."""
        reason = f"{type(exc).__name__}: {exc}"
        if final or delivery.deliveries >= stream.max_deliveries:
            log.error(
                "dead-lettering %s item %s after %d deliveries: %s",
                stream.name,
                delivery.dedup,
                delivery.deliveries,
                reason,
            )
            dropped = self._backends.transitory.dead_letter(stream, delivery, reason[:1000])
            self.router.spool.bump(f"dead_letters:{stream.name}")
            self.router.events.emit(
                "dead_lettered",
                where=stream.name,
                item=delivery.dedup,
                deliveries=delivery.deliveries,
                reason=reason[:200],
            )
            if dropped:  # the oldest dead letters went, to keep them within their bounds
                self.router.spool.bump(f"dead_letters_dropped:{stream.name}", dropped)
        else:
            if not quiet:
                log.warning(
                    "retrying %s item %s (delivery %d): %s",
                    stream.name,
                    delivery.dedup,
                    delivery.deliveries,
                    reason,
                )
            self._retry(stream, delivery, reason)

    def _retry(self, stream: StreamSpec, delivery: Delivery, reason: str) -> None:
        delay = backoff(delivery.deliveries, stream.retry_backoff_seconds)
        self._backends.transitory.release(stream, delivery, delay)
        self.router.spool.bump(f"retries:{stream.name}")


def _deadline_us(work: Work) -> int:
    within = work.bound.intent.within
    return work.task.ts + (0 if within is None else int(within.total_seconds() * 1_000_000))
