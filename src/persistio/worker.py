"""Runs deferred tasks (highest priority first), registered consumers, spool replay and the outbox.

One ``step()`` takes at most one batch from the highest non-empty priority queue, so a backlog of
LOW work never delays HIGH work by more than one poll.
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

from .backends.base import Delivery, StreamSpec
from .errors import BackendUnavailable
from .intents import Tier
from .model import BoundIntent
from .plan import TASK_DECODER, UnknownModel, Work, work_from_task
from .router import Router
from .spool import Spool

log = logging.getLogger("persistio.worker")
OUTBOX_POLL = 2.5  # seconds between a running worker's looks at the outbox

Handler = Callable[[Any], Any]
CoroutineRunner = Callable[[Coroutine[Any, Any, Any]], Any]


@dataclass(frozen=True)
class Consumer:
    bound: BoundIntent
    stream: StreamSpec
    handler: Handler
    batch: int


def backoff(deliveries: int, base: float = 0.2, cap: float = 30.0) -> float:
    """Seconds before a failed item is handed out again: exponential in its delivery count."""
    return float(min(cap, base * 2 ** max(0, deliveries - 1)))


class Worker:
    """The deferred half of persistio, run by ``drain()``, ``run_worker()`` and the CLI."""

    def __init__(self, router: Router, *, batch: int = 256) -> None:
        self.router = router
        self.batch = batch
        self.consumers: dict[str, Consumer] = {}
        self.run_coroutine: CoroutineRunner = asyncio.run
        self.name = f"{socket.gethostname()}-{os.getpid()}"
        self._replay_lock = threading.Lock()
        self._next_outbox_poll = 0.0

    @property
    def _backends(self) -> Any:
        return self.router.stores

    def consumer_name(self) -> str:
        return f"{self.name}-{threading.get_ident()}"

    def step(self, outbox_age: float = 5.0) -> bool:
        """One round of every kind of work; True when anything was done."""
        progressed = False
        for part in (
            lambda: self.replay_outbox(outbox_age),
            self.replay_spool,
            self.run_deferred,
            *(lambda c=c: self.run_consumer(c) for c in list(self.consumers.values())),
        ):
            try:
                progressed = part() or progressed
            except BackendUnavailable as exc:
                # a backend is down: the other parts go on; this one is retried next poll
                log.debug("worker step skipped a part: %s", exc)
        return progressed

    # -- deferred tasks -------------------------------------------------------------------------

    def run_deferred(self) -> bool:
        for stream in self._backends.queues.values():
            with self._backends.guard(Tier.TRANSITORY):
                deliveries = self._backends.transitory.claim(
                    stream, self.consumer_name(), self.batch
                )
            if deliveries:
                self._run_tasks(stream, deliveries)
                return True
        return False

    def _run_tasks(self, stream: StreamSpec, deliveries: Sequence[Delivery]) -> None:
        """Apply a batch of tasks, one round trip per store; ack what is done."""
        works: list[Work] = []
        taken: list[Delivery] = []
        for d in deliveries:
            try:
                work = work_from_task(TASK_DECODER.decode(d.payload))
            except (UnknownModel, ValueError) as exc:
                self._failed(stream, d, exc)
                continue
            works.append(work)
            taken.append(d)
        done: list[str] = []
        outages: dict[BoundIntent, list[tuple[Work, Delivery]]] = {}
        for work, d, error in self._apply(works, taken):
            if error is None:
                done.append(d.id)
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

    def _apply(
        self, works: Sequence[Work], deliveries: Sequence[Delivery]
    ) -> list[tuple[Work, Delivery, BaseException | None]]:
        """Each work with its error, if any; a batch refused for bad data is re-sent one work at
        a time, so one poison task never holds back the others."""
        out: list[tuple[Work, Delivery, BaseException | None]] = []
        retry: list[tuple[Work, Delivery]] = []
        for work, d, result in zip(works, deliveries, self.router.apply(works), strict=True):
            if not isinstance(result, BaseException):
                out.append((work, d, None))
            elif isinstance(result, BackendUnavailable) or len(works) == 1:
                out.append((work, d, result))
            else:
                retry.append((work, d))
        for work, d in retry:
            (result,) = self.router.apply([work])
            out.append((work, d, result if isinstance(result, BaseException) else None))
        return out

    # -- consumers ------------------------------------------------------------------------------

    def run_consumer(self, consumer: Consumer) -> bool:
        transitory = self._backends.transitory
        with self._backends.guard(Tier.TRANSITORY):
            deliveries = transitory.claim(consumer.stream, self.consumer_name(), consumer.batch)
        if not deliveries:
            return False
        acked: list[str] = []
        for d in deliveries:
            try:
                obj = consumer.bound.codec.decode(d.payload)
                result = consumer.handler(obj)
                if inspect.iscoroutine(result):
                    self.run_coroutine(result)
            except Exception as exc:
                self._failed(consumer.stream, d, exc)
            else:
                acked.append(d.id)
        if acked:
            with self._backends.guard(Tier.TRANSITORY):
                transitory.ack(consumer.stream, acked)
        return True

    # -- failures -------------------------------------------------------------------------------

    def _failed(self, stream: StreamSpec, delivery: Delivery, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if delivery.deliveries >= stream.max_deliveries:
            log.error(
                "dead-lettering %s item %s after %d deliveries: %s",
                stream.name,
                delivery.dedup,
                delivery.deliveries,
                reason,
            )
            self._backends.transitory.dead_letter(stream, delivery, reason[:1000])
            self.router.spool.bump(f"dead_letters:{stream.name}")
        else:
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

    # -- spool and outbox -----------------------------------------------------------------------

    def replay_spool(self) -> bool:
        """Replay spooled tasks oldest first, per tier, until that tier's backend refuses."""
        with self._replay_lock:
            return self._replay_spool()

    def _replay_spool(self) -> bool:
        spool = self.router.spool
        progressed = False
        for tier in spool.depth():
            entries = spool.peek(tier, self.batch)
            works: list[tuple[int, Work]] = []
            for seq, data in entries:
                try:
                    works.append((seq, work_from_task(TASK_DECODER.decode(data))))
                except UnknownModel:
                    continue  # stays spooled until a process that knows the model replays it
            results = self.router.apply([w for _, w in works])
            replayed: list[int] = []
            for (seq, _), result in zip(works, results, strict=True):
                if not isinstance(result, BaseException):
                    replayed.append(seq)
                elif not isinstance(result, BackendUnavailable):
                    raise result
            if replayed:
                spool.remove(replayed)
                progressed = True
        return progressed

    def replay_outbox(self, older_than: float) -> bool:
        """Dispatch outbox rows a committed transaction left behind (e.g. its process died).

        Such rows are rare (a crash between commit and dispatch), so an idle worker looks at
        most every OUTBOX_POLL seconds; drain() (older_than=0) always looks.
        """
        now = time.monotonic()
        if older_than > 0 and now < self._next_outbox_poll:
            return False
        self._next_outbox_poll = now + OUTBOX_POLL
        acid = self._backends.acid
        try:
            rows = acid.take_outbox(self.batch, older_than)
        except BackendUnavailable:
            return False
        if not rows:
            return False
        works: list[Work] = []
        keys: list[str] = []
        for key, data in rows:
            try:
                works.append(work_from_task(TASK_DECODER.decode(data)))
            except UnknownModel:
                continue  # left for a process that knows the model
            keys.append(key)
        if not works:
            return False
        self.router.dispatch_works(works)
        acid.finish_outbox(keys)
        return True


class SpoolReplayer:
    """A background thread that replays the spool while it is not empty.

    Saves keep flowing meanwhile: replay runs beside them, oldest first per tier, and a tier
    whose circuit is still open is skipped until its breaker lets a probe through.
    """

    def __init__(self, worker: Worker, spool: Spool, interval: float) -> None:
        self._worker = worker
        self._spool = spool
        self._interval = interval
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def wake(self) -> None:
        """Something was spooled (or may have been, by an earlier process): start replaying."""
        with self._lock:
            if self._stopped.is_set():
                return
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="persistio-spool-replay", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait()
            if self._stopped.is_set():
                return
            try:
                self._worker.replay_spool()
            except Exception:
                log.exception("spool replay failed; retrying")
            if not self._spool.depth():
                self._wake.clear()  # idle until the next buffered write
            else:
                self._stopped.wait(self._interval)

    def stop(self) -> None:
        with self._lock:
            self._stopped.set()
            self._wake.set()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=30)
