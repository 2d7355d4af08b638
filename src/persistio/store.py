"""``Persistio``: the store. One core used by the sync API and wrapped by ``AsyncPersistio``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from .config import ENV, Options, default_urls, environ_settings, masked, open_backend
from .errors import BackendUnavailable, ConfigError, DrainTimeout, PersistioError, ValidationError
from .intents import Tier, Transitory, is_safe_name
from .lanes import Lanes
from .model import REGISTRY, BoundIntent, Plan, plan_of
from .plan import SavePlan, WriteClock, plan_save
from .reads import Reader
from .router import Receipt, Router
from .spool import Spool
from .status import collect_status, pending_work
from .transaction import Transaction
from .worker import Consumer, Handler, SpoolReplayer, Worker
from .writes import Backends, prepare, stream_spec, task_queues

T = TypeVar("T")
F = TypeVar("F", bound=Handler)


class Persistio:
    """Routes every save to the stores its model's intents name.

    With no arguments, everything is embedded under ``./.persistio/`` (no servers). Otherwise pass
    one URL per tier: ``redis://`` (transitory, volatile), ``postgresql+psycopg://`` (acid),
    ``cassandra://host:port/keyspace`` (amorphous); or use ``Persistio.from_env()``.
    A store is safe to share between threads.
    """

    def __init__(
        self,
        transitory: str | Sequence[str] | None = None,
        volatile: str | Sequence[str] | None = None,
        acid: str | None = None,
        amorphous: str | None = None,
        spool: str | Path | None = None,
        *,
        data_dir: str | Path = ".persistio",
        namespace: str = "",
        pool_size: int = 5,
        connect_timeout: float = 5.0,
        realtime_threads: int = 8,
        realtime_deadline: float = 5.0,
        breaker_threshold: int = 3,
        breaker_reset: float = 0.5,
        worker_batch: int = 256,
        dedup_window: timedelta = timedelta(hours=24),
        spool_max_items: int = 1_000_000,
        spool_max_bytes: int = 1 << 30,
        spool_full_timeout: float = 5.0,
        replay_interval: float = 0.2,
    ) -> None:
        _check_options(
            pool_size,
            connect_timeout,
            realtime_threads,
            worker_batch,
            dedup_window,
            breaker_threshold,
        )
        _check_seconds(realtime_deadline=realtime_deadline, breaker_reset=breaker_reset)
        if namespace and not is_safe_name(namespace):
            raise ConfigError(
                f"Persistio(namespace={namespace!r}): use [a-z][a-z0-9_]{{0,47}} (it prefixes "
                "the task queue names)"
            )
        data = Path(data_dir)
        options = Options(
            data,
            pool_size,
            connect_timeout,
            dedup_window_seconds=dedup_window.total_seconds(),
            breaker_threshold=breaker_threshold,
            breaker_reset=breaker_reset,
            # a Redis or Cassandra call then never outlives the save waiting for it
            request_timeout=realtime_deadline,
        )
        given = {
            Tier.TRANSITORY: _joined(transitory),
            Tier.VOLATILE: _joined(volatile),
            Tier.ACID: acid,
            Tier.AMORPHOUS: amorphous,
        }
        defaults = default_urls(data)
        self.urls = {t: u if u is not None else defaults[t] for t, u in given.items()}
        opened: dict[Tier, Any] = {}
        try:
            for tier, url in self.urls.items():
                setting = f"{tier.value} (Persistio({tier.value}=...) or {ENV[tier]})"
                opened[tier] = open_backend(tier, url, options, setting)
            self._spool = Spool(
                Path(spool) if spool else data / "spool.db",
                max_items=spool_max_items,
                max_bytes=spool_max_bytes,
                full_timeout=spool_full_timeout,
            )
        except BaseException:
            for backend in opened.values():
                backend.close()
            raise
        backends = Backends(
            opened[Tier.TRANSITORY],
            opened[Tier.VOLATILE],
            opened[Tier.ACID],
            opened[Tier.AMORPHOUS],
            {t: options.breaker(t.value) for t in Tier},
            queues=task_queues(namespace),
            self_bounded=frozenset(t for t, url in self.urls.items() if _self_bounded(url)),
        )
        self._lanes = Lanes(realtime_threads)
        self._router = Router(backends, self._spool, self._lanes, realtime_deadline)
        self._worker = Worker(self._router, batch=worker_batch)
        self._clock = WriteClock()
        self._reader = Reader(backends, self._clock.next)
        self._setup_lock = threading.Lock()
        self._set_up: set[str] = set()
        self._stop = threading.Event()
        self._closed = False
        self._replayer = SpoolReplayer(self._worker, self._spool, replay_interval)
        self._router.on_buffered = self._replayer.wake
        self._replayer.wake()  # a spool left by an earlier process is replayed too

    @classmethod
    def from_env(cls, **overrides: Any) -> Persistio:
        """A store from PERSISTIO_{TRANSITORY,VOLATILE,ACID,AMORPHOUS}_URL and PERSISTIO_SPOOL."""
        return cls(**{**environ_settings(), **overrides})

    def __repr__(self) -> str:
        urls = ", ".join(f"{t.value}={masked(u)!r}" for t, u in self.urls.items())
        return f"Persistio({urls})"

    # -- schema ---------------------------------------------------------------------------------

    def setup(self) -> None:
        """Create what is missing for every model declared so far: tables, keyspace, groups.

        Idempotent; adds new columns to existing tables and never drops anything.

        Raises:
            BackendUnavailable: a backend could not be reached.
        """
        self._check_open()
        backends = self._router.backends
        with self._setup_lock:
            backends.transitory.setup(list(backends.queues.values()))
            plans = REGISTRY.plans()
            for tier in Tier:
                bounds = [b for p in plans for b in p.intents if b.tier is tier]
                backends.ready.difference_update((tier, b.name) for b in bounds)
                with backends.guard(tier):
                    for bound in bounds:
                        prepare(backends, bound)
            self._set_up.update(p.model_name for p in plans)

    def _ensure(self, plan: Plan) -> None:
        """Set a model up on first use; a tier that is down is set up by its first write."""
        if plan.model_name in self._set_up:
            return
        backends = self._router.backends
        with self._setup_lock:
            if plan.model_name in self._set_up:
                return
            for bound in plan.intents:
                try:
                    with backends.guard(bound.tier):
                        prepare(backends, bound)
                except BackendUnavailable:
                    continue
            self._set_up.add(plan.model_name)

    # -- writes ---------------------------------------------------------------------------------

    def _plan(self, obj: Any, where: str) -> SavePlan:
        self._check_open()
        # no setup here: each intent's first write sets it up, within the save's deadline
        plan = plan_of(type(obj))
        return plan_save(plan, obj, self._clock, f"{where}({type(obj).__qualname__})")

    def save(self, obj: Any) -> Receipt:
        """Validate ``obj``, run its REALTIME intents now and queue the rest.

        Raises:
            ValidationError: ``obj`` does not fit its model; nothing was written.
            BackendUnavailable: an intent with ``on_outage="fail"`` could not be written (then no
                other intent of this save was written either).
        """
        return self._router.dispatch([self._plan(obj, "save")])[0]

    def save_many(self, objs: Iterable[Any]) -> list[Receipt]:
        """Save many objects through batched writes; every object is validated before any write."""
        plans = [self._plan(obj, "save_many") for obj in objs]
        return self._router.dispatch(plans) if plans else []

    def transaction(self) -> Transaction:
        """``with store.transaction() as tx: tx.save(a)``: acid intents commit together."""
        self._check_open()
        return Transaction(self)

    # -- reads ----------------------------------------------------------------------------------

    def get(self, model: type[T], intent: str, **key: Any) -> T | None:
        """The object stored by ``intent`` under ``key`` (keyword per key field); None if absent."""
        self._check_open()
        plan = plan_of(model)
        return self._reader.get(plan.intent(intent), key)  # type: ignore[no-any-return]

    def query(self, model: type[T], intent: str, *, limit: int = 20, **partition: Any) -> list[T]:
        """One partition of an amorphous intent, newest first by its ``order`` fields."""
        self._check_open()
        plan = plan_of(model)
        return self._reader.query(plan.intent(intent), partition, limit)

    # -- deferred work --------------------------------------------------------------------------

    def consumer(self, intent: str, *, batch: int = 64) -> Callable[[F], F]:
        """Register a handler for a transitory intent (at-least-once; return = ack = expunged)."""
        bound = REGISTRY.intent(Tier.TRANSITORY, intent)
        if bound is None or not isinstance(bound.intent, Transitory):
            raise ValidationError(
                f"consumer({intent!r}): no model declares a Transitory intent with this name"
            )
        if not isinstance(batch, int) or batch < 1:
            raise ValidationError(f"consumer({intent!r}): batch={batch!r}: use an int >= 1")

        def register(handler: F) -> F:
            self._ensure(plan_of(bound.model))
            self._worker.consumers[intent] = Consumer(bound, stream_spec(bound), handler, batch)
            return handler

        return register

    def drain(self, timeout: float = 30.0) -> None:
        """Run deferred tasks, spool replay, the outbox and this process's consumers until none
        has pending work.

        Raises:
            DrainTimeout: work was still pending after ``timeout`` seconds.
        """
        self._check_open()
        deadline = time.monotonic() + timeout
        while True:
            if not self._worker.step(outbox_age=0.0):
                pending = self._pending()
                if not pending:
                    return
                if time.monotonic() >= deadline:
                    raise DrainTimeout(f"drain({timeout}) timed out; still pending: {pending}")
                time.sleep(0.01)
            elif time.monotonic() >= deadline:
                raise DrainTimeout(f"drain({timeout}) timed out; still pending: {self._pending()}")

    def _pending(self) -> dict[str, int]:
        return pending_work(self._router, self._consumer_streams())

    def _consumer_streams(self) -> list[BoundIntent]:
        return [c.bound for c in self._worker.consumers.values()]

    def run_worker(self, *, poll_interval: float = 0.05) -> None:
        """Run deferred tasks and consumers until ``stop_worker()`` (or SIGTERM in the CLI)."""
        self._check_open()
        self._stop.clear()
        while not self._stop.is_set():
            if not self._worker.step():
                self._stop.wait(poll_interval)

    def stop_worker(self) -> None:
        """Ask ``run_worker`` to return after the step in progress."""
        self._stop.set()

    # -- visibility and lifecycle ---------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Backends' health, queue depth and oldest age per priority, streams, spool, counters."""
        self._check_open()
        streams = [b for p in REGISTRY.plans() for b in p.intents if b.tier is Tier.TRANSITORY]
        return collect_status(self._router, self.urls, streams)

    def close(self) -> None:
        """Stop workers and close every connection; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._replayer.stop()
        self._lanes.shutdown()
        self._router.backends.close()
        self._spool.close()

    def _check_open(self) -> None:
        if self._closed:
            raise PersistioError("this Persistio store is closed")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _self_bounded(url: str) -> bool:
    # psycopg has no client-side statement timeout: a paused PostgreSQL would hold the caller
    return not url.startswith("postgresql")


def _joined(urls: str | Sequence[str] | None) -> str | None:
    """A list of URLs is a primary followed by its fallbacks: kept as "url,url"."""
    if isinstance(urls, list | tuple) and all(isinstance(u, str) for u in urls):
        return ",".join(urls)
    return urls  # type: ignore[return-value]  # anything else: open_backend names the setting


def _check_seconds(**values: float) -> None:
    for name, value in values.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"Persistio({name}={value!r}): use seconds > 0")


def _check_options(
    pool_size: int,
    connect_timeout: float,
    threads: int,
    batch: int,
    dedup_window: timedelta,
    breaker_threshold: int,
) -> None:
    for name, value in (
        ("breaker_threshold", breaker_threshold),
        ("pool_size", pool_size),
        ("realtime_threads", threads),
        ("worker_batch", batch),
    ):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"Persistio({name}={value!r}): use an int >= 1")
    if not isinstance(connect_timeout, int | float) or connect_timeout <= 0:
        raise ConfigError(f"Persistio(connect_timeout={connect_timeout!r}): use seconds > 0")
    if not isinstance(dedup_window, timedelta) or dedup_window <= timedelta(0):
        raise ConfigError(f"Persistio(dedup_window={dedup_window!r}): use a positive timedelta")
