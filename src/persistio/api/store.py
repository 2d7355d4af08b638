"""``Persistio``: the store. One core used by the sync API and wrapped by ``AsyncPersistio``."""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar, overload

from persistio.api.status import GRACE, collect_status, pending_work
from persistio.api.transaction import Transaction
from persistio.backends.base import Options
from persistio.backends.watchdog import in_daemon_thread
from persistio.config.datadir import local_files, resolve_data_dir
from persistio.config.env import ENV, environ_settings
from persistio.config.settings import (
    FLAT,
    BreakerPolicy,
    Pools,
    Settings,
    SpoolLimits,
    TaskQueues,
    Timeouts,
    resolve,
)
from persistio.config.urls import masked
from persistio.errors import (
    BackendUnavailable,
    ConfigError,
    DrainTimeout,
    IntentError,
    PersistioError,
    ValidationError,
)
from persistio.events import Events, Hook
from persistio.model.catalog import Catalog, check_namespace
from persistio.model.clock import WriteClock
from persistio.model.declare import REGISTRY, BoundIntent, Plan, plan_of
from persistio.model.intents import Tier, Transitory
from persistio.model.tasks import SavePlan, plan_delete, plan_save, plan_uncount
from persistio.outage.breaker import CircuitBreaker
from persistio.outage.spool import Spool
from persistio.read.lookups import find, not_before_of
from persistio.read.pages import Page
from persistio.read.reader import Reader
from persistio.tiers.op_builder import Streams
from persistio.tiers.op_builder import task_queues as queue_specs
from persistio.tiers.registry import default_urls, open_backends
from persistio.tiers.tier_set import Stores
from persistio.work.consumers import check_consumer
from persistio.work.deadletters import DeadLetter, DeadLetters
from persistio.work.delivery import takes_delivery
from persistio.work.promises import Promises
from persistio.work.replay import SpoolReplayer
from persistio.work.unconsumed import unconsumed, unconsumed_text
from persistio.work.worker import Consumer, Handler, Worker
from persistio.write.backpressure import Pressure
from persistio.write.clock_sync import ClockSync
from persistio.write.lanes import Lanes
from persistio.write.router import Receipt, Router

log = logging.getLogger("persistio")
T = TypeVar("T")
S = TypeVar("S")
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
        data_dir: str | Path | None = None,
        namespace: str = "",
        timeouts: Timeouts | None = None,
        pools: Pools | None = None,
        spool_limits: SpoolLimits | None = None,
        breaker: BreakerPolicy | None = None,
        task_queues: TaskQueues | None = None,
        dedup_window: timedelta = timedelta(hours=1),
        max_clock_skew: timedelta = timedelta(minutes=5),
        models: Sequence[type] | None = None,
        tombstone_window: timedelta = timedelta(days=7),
        **flat: Any,
    ) -> None:
        unknown = sorted(set(flat) - set(FLAT))
        if unknown:
            raise ConfigError(
                f"Persistio() got unknown option(s) {unknown}; see help(persistio.Persistio)"
            )
        settings = resolve(
            {
                "timeouts": timeouts,
                "pools": pools,
                "spool_limits": spool_limits,
                "breaker": breaker,
                "task_queues": task_queues,
            },
            flat,
            dedup_window,
            max_clock_skew,
        )
        check_namespace(namespace)
        self.settings = settings
        scope = _scope_of(models)
        if not isinstance(tombstone_window, timedelta) or tombstone_window <= timedelta(0):
            raise ConfigError(
                f"Persistio(tombstone_window={tombstone_window!r}): use a positive timedelta"
            )
        self._tombstone_window = tombstone_window
        data = resolve_data_dir(data_dir)
        self.data_dir = data  # absolute: a later chdir does not move the store
        given = {
            Tier.TRANSITORY: _joined(transitory),
            Tier.VOLATILE: _joined(volatile),
            Tier.ACID: acid,
            Tier.AMORPHOUS: amorphous,
        }
        defaults = default_urls(data)
        self.urls = {t: u if u is not None else defaults[t] for t, u in given.items()}
        self._catalog = Catalog(scope, namespace, self.urls)
        # a namespace's writes wait in a spool of their own: another namespace's store would
        # replay them into its own tables
        default_spool = f"spool-{namespace}.db" if namespace else "spool.db"
        spool_path = Path(spool) if spool else data / default_spool
        # before anything is opened (opening creates the files): did this store find data?
        self.found_data = any(p.exists() for p in local_files(self.urls.values(), spool_path))
        self._namespace = namespace
        self._events = Events()
        self._stores = self._wire(settings, data, namespace)
        try:
            limits = settings.spool_limits
            self._spool = Spool(
                spool_path,
                max_items=limits.max_items,
                max_bytes=limits.max_bytes,
                full_timeout=limits.full_timeout,
            )
        except BaseException:
            self._stores.close()
            raise
        deadline = settings.timeouts.realtime
        self._lanes = Lanes(settings.pools.realtime_threads)
        self._router = Router(
            self._stores,
            self._spool,
            self._lanes,
            deadline,
            settings.pools.group_max,
            self._events,
        )
        self._router.plan_named = self._catalog.plan_named
        self._worker = Worker(
            self._router,
            batch=settings.pools.worker_batch,
            unknown_model_grace=settings.spool_limits.unknown_model_grace,
        )
        queues = settings.task_queues
        self._worker.preempt_every = queues.preempt_every
        self._promises = self._worker.promises = Promises(self._spool, queues.lag_window)
        self._pressure = self._router.pressure = Pressure(
            self._stores,
            self._spool,
            factor=queues.lag_factor,
            max_wait=queues.slow_wait,
            refresh=queues.pressure_refresh,
            plans=self._catalog.plans,
        )
        self._clock = WriteClock(int(settings.max_clock_skew.total_seconds() * 1_000_000))
        self._clock_sync = ClockSync(
            self._clock, self._spool, self._stores, namespace, self._events
        )
        self._reader = Reader(self._stores, self._clock_sync.follow, self._events)
        self._setup_lock = threading.Lock()
        self._set_up: set[str] = set()
        self._stop = threading.Event()
        self._closed = False
        self._replayer = SpoolReplayer(
            self._worker.replay,
            self._spool,
            settings.spool_limits.replay_interval,
            tick=self._clock_sync.tick,
        )
        self._router.on_buffered = self._replayer.wake
        # a store made before os.fork() (gunicorn --preload, multiprocessing) works in the child
        os.register_at_fork(after_in_child=functools.partial(_after_fork, weakref.ref(self)))
        self._dead = DeadLetters(self._stores, self._spool, self._transitory_intents)
        self._replayer.wake()  # a spool left by an earlier process is replayed too

    def _wire(self, settings: Settings, data: Path, namespace: str) -> Stores:
        """Open each tier's backend (one per server) and wire them with their breakers."""
        options = Options(
            data,
            settings.pools.size,
            settings.timeouts.connect,
            # a Redis or Cassandra call then never outlives the save waiting for it
            request_timeout=settings.timeouts.realtime,
            dedup_window_seconds=settings.dedup_window.total_seconds(),
            tombstone_window_seconds=self._tombstone_window.total_seconds(),
            namespace=namespace,
        )
        policy = settings.breaker
        queues = settings.task_queues

        def breaker(name: str) -> CircuitBreaker:
            return CircuitBreaker(
                name,
                failure_threshold=policy.threshold,
                reset_timeout=policy.reset,
                max_reset_timeout=policy.max_reset,
                on_change=self._circuit_changed,
            )

        opened = open_backends(
            self.urls,
            options,
            lambda tier: f"{tier.value} (Persistio({tier.value}=...) or {ENV[tier]})",
            breaker,
        )
        return Stores(
            opened[Tier.TRANSITORY],
            opened[Tier.VOLATILE],
            opened[Tier.ACID],
            opened[Tier.AMORPHOUS],
            queues=queue_specs(namespace, queues.partitions, queues.replicas, queues.visibility),
            breaker_factory=breaker,
            namespace=namespace,
        )

    def _circuit_changed(self, tier: str, before: str, after: str) -> None:
        event = "circuit_opened" if after == "open" else "circuit_closed"
        self._events.emit(event, tier=tier, was=before)

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
        stores = self._stores
        with self._setup_lock:
            self._catalog.check()  # before anything is created
            plans = self._plans()
            for plan in plans:
                self._catalog.claim(plan)
            with stores.guard(Tier.TRANSITORY):
                stores.transitory.setup(stores.all_queues())
            for tier in Tier:
                bounds = [b for p in plans for b in p.intents if b.tier is tier]
                stores.ready.difference_update((tier, b.name) for b in bounds)
                with stores.guard(tier):
                    for bound in bounds:
                        stores.prepare(bound)
            self._set_up.update(p.model_name for p in plans)
        # start above every timestamp another process has shared
        self._clock_sync.sync()

    def _ensure(self, plan: Plan) -> None:
        """Set a model up on first use; a tier that is down is set up by its first write."""
        if plan.model_name in self._set_up:
            return
        stores = self._stores
        with self._setup_lock:
            if plan.model_name in self._set_up:
                return
            self._catalog.claim(plan)
            for bound in plan.intents:
                try:
                    with stores.guard(bound.tier):
                        stores.prepare(bound)
                except BackendUnavailable:
                    continue
            self._set_up.add(plan.model_name)

    # -- writes ---------------------------------------------------------------------------------

    def _plan(
        self,
        obj: Any,
        where: str,
        stamp: tuple[str, int] | None = None,
        not_before: float = 0.0,
    ) -> SavePlan:
        self._check_open()
        # no setup here: each intent's first write sets it up, within the save's deadline
        try:
            plan = self._plan_of(type(obj), where)
        except IntentError as exc:
            raise IntentError(f"{where}: {exc}") from None
        name = f"{where}({type(obj).__qualname__})"
        return plan_save(plan, obj, self._clock, name, stamp, not_before)

    def save(
        self,
        obj: Any,
        *,
        idempotency_key: str | None = None,
        delay: timedelta | None = None,
        not_before: datetime | None = None,
    ) -> Receipt:
        """Validate ``obj``, run its REALTIME intents now and queue the rest.

        Args:
            obj: An instance of a ``@persist`` model.
            idempotency_key: A key of the caller's (an order number, a request id). A retry with
                the same key within ``dedup_window`` (after a timeout, a crash, in another
                process) writes exactly what the first attempt wrote: the same write id and
                timestamp, so no store keeps anything newer and a consumer sees one entry.
            delay: Delayed work: its stream entries and deferred tasks are handed to consumers
                and workers only after this long (they are stored now, so they survive
                restarts); its other REALTIME writes happen now.
            not_before: The same, as an aware datetime (give one of the two).

        Raises:
            ValidationError: ``obj`` does not fit its model; nothing was written.
            BackendUnavailable: nothing could be written, or an intent with
                ``on_outage="fail"`` could not be (the exception's ``written`` and
                ``not_written`` name the intents).
        """
        due = not_before_of(delay, not_before, "save")
        stamp = None
        if idempotency_key is not None:
            stamp = self._first_attempt(type(obj), idempotency_key)
        return self._router.dispatch([self._plan(obj, "save", stamp, due)])[0]

    def _first_attempt(self, model: type, key: str) -> tuple[str, int]:
        """(write id, timestamp) of the first save made with ``key``: this one's, if it is."""
        if not isinstance(key, str) or not key or len(key) > 200:
            raise ValidationError(
                f"save(idempotency_key={key!r}): use a non-empty str of at most 200 characters"
            )
        ts = self._clock.next()
        mine = f"{self._clock.write_id(ts)} {ts}"
        scope = f"{self._namespace}:{self._plan_of(model, 'save').model_name}:{key}"
        with self._stores.guard(Tier.TRANSITORY):
            stored = self._stores.transitory.remember(
                scope, mine, self.settings.dedup_window.total_seconds()
            )
        write_id, _, stamp = stored.partition(" ")
        return write_id, int(stamp)

    def save_many(
        self,
        objs: Iterable[Any],
        *,
        delay: timedelta | None = None,
        not_before: datetime | None = None,
    ) -> list[Receipt]:
        """Save many objects through batched writes; every object is validated before any write.

        Raises:
            ValidationError: an object does not fit its model (the message names its index,
                ``save_many[3](Model): ...``); nothing was written.
        """
        due = not_before_of(delay, not_before, "save_many")
        plans = [self._plan(obj, f"save_many[{i}]", None, due) for i, obj in enumerate(objs)]
        return self._router.dispatch(plans) if plans else []

    @overload
    def delete(self, obj: object, /) -> Receipt: ...
    @overload
    def delete(self, model: type, intent: str, /, **key: Any) -> Receipt: ...
    def delete(self, target: Any, intent: str | None = None, /, **key: Any) -> Receipt:
        """Delete what ``save(obj)`` wrote under its keyed intents, or one intent's value.

        ``delete(obj)``: a tombstone for ``obj``'s key in each of its volatile, acid and
        amorphous intents (transitory entries are left to their consumers), and ``obj``
        withdrawn from its Counts declared with ``identity=``. ``delete(Model, intent, **key)``:
        the value one intent holds under ``key``. A delete is a write stamped like a save and
        resolved by last write wins: a save older than it, replayed or arriving late (through
        the spool, a task queue or a redelivery), never brings the value back; a newer save
        does. It runs like a save: REALTIME intents now, the others deferred, spooled on an
        outage. Tombstones are collected after a window (volatile: the intent's ttl; amorphous:
        its retain, or never; acid: 7 days).

        Raises:
            ValidationError: not a model instance; wrong key fields; an intent with no key
                (transitory) or a Count.
        """
        self._check_open()
        if intent is None:
            if key:
                raise ValidationError(
                    f"delete({type(target).__qualname__}): pass an object, or a model, an intent "
                    "and its key fields"
                )
            return self._router.dispatch([self._plan_delete_object(target)])[0]
        if not isinstance(target, type):
            raise ValidationError(
                f"delete({target!r}, {intent!r}): the first argument must be the model class"
            )
        plan = self._plan_of(target, "delete")
        bound = plan.intent(intent)
        where = f"delete({target.__qualname__}, {intent!r})"
        if bound.tier is Tier.TRANSITORY or bound.counting is not None:
            kind = "a Count" if bound.counting is not None else "transitory"
            raise ValidationError(
                f"{where}: {intent!r} is {kind}; delete() removes keyed values (volatile, acid, "
                "amorphous)"
            )
        values = bound.codec.check_key(key, bound.key, where)
        return self._router.dispatch([plan_delete(plan, [(bound, values)], self._clock)])[0]

    def _plan_delete_object(self, obj: Any) -> SavePlan:
        plan = self._plan_of(type(obj), "delete")
        where = f"delete({type(obj).__qualname__})"
        plan.codec.validate(obj, where)
        keys = []
        for bound in plan.intents:
            if bound.tier is Tier.TRANSITORY or bound.counting is not None:
                continue
            stored = obj if bound.project is None else bound.project(obj)
            keys.append((bound, bound.codec.key_values(stored, bound.key)))
        uncounts = plan_uncount(plan, obj, self._clock, where).work
        return plan_delete(plan, keys, self._clock, uncounts)

    def transaction(self) -> Transaction:
        """``with store.transaction() as tx: tx.save(a)``: acid intents commit together."""
        self._check_open()
        return Transaction(self)

    # -- reads ----------------------------------------------------------------------------------

    @overload
    def get(self, model: type[Any], intent: str, *, as_type: type[S], **key: Any) -> S | None: ...
    @overload
    def get(self, model: type[T], intent: str, *, as_type: None = None, **key: Any) -> T | None: ...
    def get(
        self, model: type[Any], intent: str, *, as_type: type[Any] | None = None, **key: Any
    ) -> Any:
        """The object stored by ``intent`` under ``key`` (keyword per key field); None if absent.

        ``as_type``: the type the intent stores, when its ``project=`` stores another type than
        the model (the result is typed as it); checked against the declaration.
        """
        self._check_open()
        bound = _typed(self._plan_of(model, "get").intent(intent), as_type, "get")
        return self._reader.get(bound, key)

    @overload
    def get_many(
        self,
        model: type[Any],
        intent: str,
        keys: Sequence[dict[str, Any]],
        *,
        as_type: type[S],
    ) -> list[S | None]: ...
    @overload
    def get_many(
        self,
        model: type[T],
        intent: str,
        keys: Sequence[dict[str, Any]],
        *,
        as_type: None = None,
    ) -> list[T | None]: ...
    def get_many(
        self,
        model: type[Any],
        intent: str,
        keys: Sequence[dict[str, Any]],
        *,
        as_type: type[Any] | None = None,
    ) -> list[Any]:
        """The objects stored by ``intent`` under each of ``keys``, aligned with them.

        Each key is a dict of the intent's key fields, as ``get`` takes them as keywords. One
        round trip per store (an ``IN`` query, a Redis pipeline, concurrent CQL reads) instead
        of one ``get`` per key; ``None`` where a key holds nothing.

        Raises:
            ValidationError: ``keys`` is not a list of dicts of exactly the key fields.
        """
        self._check_open()
        bound = _typed(self._plan_of(model, "get_many").intent(intent), as_type, "get_many")
        return self._reader.get_many(bound, keys)

    @overload
    def query(
        self,
        model: type[Any],
        intent: str,
        *,
        as_type: type[S],
        limit: int = 20,
        since: Any = None,
        until: Any = None,
        oldest_first: bool = False,
        **partition: Any,
    ) -> list[S]: ...
    @overload
    def query(
        self,
        model: type[T],
        intent: str,
        *,
        as_type: None = None,
        limit: int = 20,
        since: Any = None,
        until: Any = None,
        oldest_first: bool = False,
        **partition: Any,
    ) -> list[T]: ...
    def query(
        self,
        model: type[Any],
        intent: str,
        *,
        as_type: type[Any] | None = None,
        limit: int = 20,
        since: Any = None,
        until: Any = None,
        oldest_first: bool = False,
        **partition: Any,
    ) -> list[Any]:
        """One partition of an amorphous intent, newest first by its ``order`` fields.

        ``since`` (included) and ``until`` (excluded) bound the first order field, e.g. the
        ``at`` of ``order=("at", "id")``; ``oldest_first=True`` reads the other way.
        """
        self._check_open()
        bound = _typed(self._plan_of(model, "query").intent(intent), as_type, "query")
        return self._reader.query(bound, partition, limit, since, until, oldest_first)

    def find(self, model: type[T], intent: str, *, limit: int = 100, **fields: Any) -> list[T]:
        """Rows of an Acid intent whose ``fields`` equal the values given, by primary key.

        The fields must be those of a declared index (``Acid(..., index=[("owner_id",)])``),
        or its first ones, so the database answers from that index.

        Raises:
            ValidationError: not an Acid intent; no index serves the fields; a bad value.
        """
        self._check_open()
        return find(self._stores, self._plan_of(model, "find").intent(intent), fields, limit)

    @overload
    def pages(
        self,
        model: type[Any],
        intent: str,
        *,
        as_type: type[S],
        page_size: int = 500,
        cursor: str | None = None,
        **partition: Any,
    ) -> Iterator[Page[S]]: ...
    @overload
    def pages(
        self,
        model: type[T],
        intent: str,
        *,
        as_type: None = None,
        page_size: int = 500,
        cursor: str | None = None,
        **partition: Any,
    ) -> Iterator[Page[T]]: ...
    def pages(
        self,
        model: type[Any],
        intent: str,
        *,
        as_type: type[Any] | None = None,
        page_size: int = 500,
        cursor: str | None = None,
        **partition: Any,
    ) -> Iterator[Page[Any]]:
        """A whole partition of an amorphous intent, page by page, newest first.

        Each page is a list of up to ``page_size`` rows with a ``cursor``: pass it back as
        ``cursor=`` (in this process or another) to resume after that page; the last page's is
        None. No row cap: a partition of any size is read to its end, one page in memory.
        The first page is read (and the arguments checked) by this call, not by the first
        ``next()``.

        Raises:
            ValidationError: not an amorphous intent, wrong partition fields, a bad page size or
                a cursor that is not one this intent handed out.
        """
        bound, first = self._first_page(model, intent, as_type, page_size, cursor, partition)
        return self._more_pages(bound, partition, page_size, first)

    def _first_page(
        self,
        model: type[Any],
        intent: str,
        as_type: type[Any] | None,
        page_size: int,
        cursor: str | None,
        partition: dict[str, Any],
    ) -> tuple[BoundIntent, Page[Any]]:
        self._check_open()
        bound = _typed(self._plan_of(model, "pages").intent(intent), as_type, "pages")
        return bound, self._reader.page(bound, partition, page_size, cursor)

    def _next_page(
        self, bound: BoundIntent, partition: dict[str, Any], page_size: int, cursor: str
    ) -> Page[Any]:
        self._check_open()
        return self._reader.page(bound, partition, page_size, cursor)

    def _more_pages(
        self, bound: BoundIntent, partition: dict[str, Any], page_size: int, page: Page[Any]
    ) -> Iterator[Page[Any]]:
        while True:
            if page:
                yield page
            if page.cursor is None:
                return
            page = self._next_page(bound, partition, page_size, page.cursor)

    def count(
        self,
        model: type,
        intent: str,
        *,
        since: datetime,
        until: datetime | None = None,
        **key: Any,
    ) -> int | float:
        """A ``Count`` intent's count for one key (keyword per key field) over [since, until).

        Counts are kept per bucket, so a bound inside a bucket takes in that whole bucket (of
        the finest size); ``until=None`` is now. Reads the fewest, coarsest buckets that tile
        the range: the cost is a few requests per bucket, never per counted save. An int
        unless a float weight was counted.

        Raises:
            ValidationError: not a Count; wrong key fields; since after until; too many buckets.
        """
        self._check_open()
        return self._reader.count(self._plan_of(model, "count").intent(intent), key, since, until)

    def counts(
        self,
        model: type,
        intent: str,
        *,
        since: datetime,
        until: datetime | None = None,
        granularity: timedelta | None = None,
        **key: Any,
    ) -> list[tuple[datetime, int | float]]:
        """``(bucket start, count)`` for every bucket of ``granularity`` (a declared bucket
        size; default the finest) overlapping [since, until), oldest first, zeros included."""
        self._check_open()
        plan = self._plan_of(model, "counts")
        return self._reader.counts(plan.intent(intent), key, since, until, granularity)

    # -- deferred work --------------------------------------------------------------------------

    def consumer(
        self, intent: str, *, name: str | None = None, batch: int = 64, replace: bool = False
    ) -> Callable[[F], F]:
        """Register a handler for a transitory intent (at-least-once; return = ack = expunged).

        ``handler(obj)``, or ``handler(obj, delivery)`` to get a ``pio.Delivery`` (write id,
        attempt, enqueue time) whose ``key`` makes the handler's own effects idempotent.

        A stream with several consumers declares them, ``pio.Transitory("evts",
        consumers=("email", "sms"))``, and each handler names its own: ``name="email"``. Each
        is a consumer group of its own: it receives every entry, with its own retries and dead
        letters. ``replace=True`` swaps the handler registered under that name on purpose.

        Raises:
            ValidationError: no model declares a Transitory intent of that name; a bad batch.
            IntentError: a name the intent does not declare (or none where it declares
                several); a second handler under one name.
        """
        bound = self._catalog.intent(Tier.TRANSITORY, intent)
        if bound is None:  # declared, but by a model this store does not cover?
            for plan in REGISTRY.plans():
                found = plan.by_name.get(intent)
                if found is not None and found.tier is Tier.TRANSITORY:
                    self._plan_of(plan.model, "consumer")  # raises, saying why
        if bound is None or not isinstance(bound.intent, Transitory):
            raise ValidationError(
                f"consumer({intent!r}): no model declares a Transitory intent with this name"
            )
        self._plan_of(bound.model, "consumer")
        if not isinstance(batch, int) or batch < 1:
            raise ValidationError(f"consumer({intent!r}): batch={batch!r}: use an int >= 1")

        key = check_consumer(bound, name, self._worker.consumers, replace)

        def register(handler: F) -> F:
            self._ensure(self._plan_of(bound.model, "consumer"))
            check_consumer(bound, name, self._worker.consumers, replace)
            streams = self._stores.ops.consumer_streams(bound, name)
            self._worker.consumers[key] = Consumer(
                bound, streams, handler, batch, takes_delivery(handler), name
            )
            return handler

        return register

    def drain(self, timeout: float = 30.0) -> dict[str, int]:
        """Run deferred tasks, spool replay, the outbox and this process's consumers until none
        has pending work.

        Streams that no consumer of this process reads are not waited on: they are returned
        (and logged), ``{consumer: pending entries}``, e.g. ``{"evts~sms": 50}``; empty when
        every stream with entries has a consumer here.

        Raises:
            DrainTimeout: work was still pending after ``timeout`` seconds (the message lists
                it, and the streams with no consumer here).
        """
        self._check_open()
        deadline = time.monotonic() + timeout
        while True:
            if not self._worker.step(outbox_age=0.0):
                pending = self._pending()
                if not pending:
                    return self._report_unconsumed()
                if time.monotonic() >= deadline:
                    raise self._timed_out(timeout, pending)
                time.sleep(0.01)
            elif time.monotonic() >= deadline:
                raise self._timed_out(timeout, self._pending())

    def _timed_out(self, timeout: float, pending: dict[str, int]) -> DrainTimeout:
        text = f"drain({timeout}) timed out; still pending: {pending}"
        waiting = self.unconsumed()
        if waiting:
            text += f"; not waited on: {unconsumed_text(waiting)}"
        return DrainTimeout(text)

    def _report_unconsumed(self) -> dict[str, int]:
        waiting = self.unconsumed()
        if waiting:
            log.warning("drain(): %s", unconsumed_text(waiting))
        return waiting

    @property
    def consumers(self) -> list[str]:
        """The consumers registered in this process: ``<intent>`` or ``<intent>~<name>``."""
        return sorted(self._worker.consumers)

    def unconsumed(self) -> dict[str, int]:
        """``{consumer: pending entries}`` for the streams that hold entries and that no
        consumer of this process reads (``drain()`` does not wait on them)."""
        self._check_open()
        return unconsumed(self._transitory_intents(), self._stores, self._worker.consumers)

    def _pending(self) -> dict[str, int]:
        return pending_work(self._router, self._consumer_streams())

    def _consumer_streams(self) -> list[tuple[str, Streams]]:
        return [(k, c.streams) for k, c in self._worker.consumers.items()]

    def step(self) -> bool:
        """One round of the worker's work (the outbox, the spool, one batch of the highest
        non-empty priority queue, each consumer's batch); True when anything was done.

        ``run_worker`` is this in a loop; call it yourself to drive work step by step.
        """
        self._check_open()
        return self._worker.step()

    def run_worker(self, *, poll_interval: float = 0.05, threads: int = 1) -> None:
        """Run deferred tasks and consumers until ``stop_worker()`` (or SIGTERM in the CLI).

        ``threads`` > 1 runs that many worker loops in this process, for work that waits on I/O
        (Redis round trips, Cassandra's requests): each takes its own batches, as separate
        processes would.

        Raises:
            ConfigError: ``threads`` is not an int from 1 to 256.
        """
        self._check_open()
        if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= 256:
            raise ConfigError(f"run_worker(threads={threads!r}): use an int from 1 to 256")
        self._stop.clear()
        self._pressure.start()  # the load figures of status() come from its samples
        others = [
            threading.Thread(target=self._work, args=(poll_interval,), name=f"persistio-worker-{i}")
            for i in range(1, threads)
        ]
        for thread in others:
            thread.start()
        try:
            self._work(poll_interval)
        finally:
            self._stop.set()
            for thread in others:
                thread.join()

    def _work(self, poll_interval: float) -> None:
        while not self._stop.is_set():
            if not self._worker.step():
                self._stop.wait(poll_interval)

    def stop_worker(self) -> None:
        """Ask ``run_worker`` to return after the step in progress."""
        self._stop.set()

    # -- dead letters ---------------------------------------------------------------------------

    def dead_letters(self, intent: str | None = None, *, limit: int = 100) -> list[DeadLetter]:
        """Items set aside after they kept failing: a stream's (its consumer raised), a task
        queue's (a deferred write kept failing) and the spool's (a replay the store refused),
        oldest first, each with its reason, attempts, times and a summary.
        """
        self._check_open()
        return self._dead.list(intent, limit)

    def redrive(self, ids: Sequence[str] | None = None, *, intent: str | None = None) -> int:
        """Put dead letters back where they came from (all, those of ``intent``, or ``ids`` from
        ``dead_letters()``); return how many. Their consumers and workers try them again."""
        self._check_open()
        return self._dead.redrive(ids, intent)

    def purge_dead_letters(
        self, ids: Sequence[str] | None = None, *, intent: str | None = None
    ) -> int:
        """Delete dead letters for good (all, those of ``intent``, or ``ids``); how many."""
        self._check_open()
        return self._dead.purge(ids, intent)

    # -- visibility and lifecycle ---------------------------------------------------------------

    def on(self, event: str, fn: Hook) -> Callable[[], None]:
        """Call ``fn(event, fields)`` whenever ``event`` happens ("*" for every event).

        The events (each also logged under ``persistio.events``) are listed in
        ``persistio.events.EVENTS``: circuit_opened, circuit_closed, spool_started,
        spool_drained, replay_done, dead_lettered, rebuilding, clock_ignored. The hook runs on
        the thread where the change happened: keep it quick. One that raises is logged and
        counted in ``status()["hooks"]["errors"]``.

        Returns:
            A function that removes the hook.

        Raises:
            ValidationError: no such event, or ``fn`` is not callable.
        """
        return self._events.on(event, fn)

    def status(self) -> dict[str, Any]:
        """Backends' health, queue depth and oldest age per priority, streams, spool, counters."""
        self._check_open()
        looking = in_daemon_thread(self._pressure.load, "persistio-load")  # beside the rest
        intents = self._transitory_intents()
        found = collect_status(self._router, self.urls, intents)
        found["promises"] = self._promises.report(
            [b for p in self._plans() for b in p.intents], self._spool.counters()
        )
        found["load"] = self._answer(looking)
        counters = self._spool.counters()
        found["shed"] = {k[5:]: v for k, v in counters.items() if k.startswith("shed:")}
        found["slowed"] = {k[7:]: v for k, v in counters.items() if k.startswith("slowed:")}
        found["data_dir"] = str(self.data_dir)
        found["data_dir_found_data"] = self.found_data
        here = self._worker.consumers
        found["consumers"] = sorted(here)  # registered in this process
        try:  # streams with entries that none of them reads
            found["unconsumed"] = unconsumed(intents, self._stores, here)
        except PersistioError as exc:
            found["unconsumed"] = {"error": str(exc)}
        found["clock"] = self._clock_sync.status()
        found["hooks"] = {"errors": self._events.errors}
        return found

    def load(self) -> dict[str, Any]:
        """How fast deferred work arrives and is served, per priority, and how many worker
        threads the current load needs (also ``status()["load"]``). Rates compare this look
        at the queues with an earlier one (0.2 s to 10 s before): ``None`` without one.

        Bounded like ``status()``: a server that does not answer within the realtime deadline
        gives ``{"error": ...}``.
        """
        self._check_open()
        return self._answer(in_daemon_thread(self._pressure.load, "persistio-load"))

    def _answer(self, future: Future[dict[str, Any]]) -> dict[str, Any]:
        try:
            return future.result(timeout=self._router.deadline + GRACE)
        except TimeoutError:
            return {"error": f"no answer within {self._router.deadline}s"}

    def _transitory_intents(self) -> list[BoundIntent]:
        return [b for p in self._plans() for b in p.intents if b.tier is Tier.TRANSITORY]

    def stored_intent(self, tier: Tier, stored: str) -> BoundIntent | None:
        """The intent of this store's models that is stored under ``stored`` (a table, stream
        or volatile name as it is in the store, namespace included); None when none is."""
        return self._catalog.stored_intent(tier, stored)

    def _plans(self) -> list[Plan]:
        """The plans this store covers: those of ``models=``, or every declared model."""
        return self._catalog.plans()

    def _plan_of(self, model: type, verb: str) -> Plan:
        """``model``'s plan, if this store covers it (and can keep it apart from the others)."""
        return self._catalog.plan_of(model, verb)

    def _after_fork(self) -> None:
        """In a forked child: connections, pools, locks and the replay thread of its own."""
        if self._closed:
            return
        self._spool.after_fork()
        self._stores.after_fork()
        self._lanes = Lanes(self.settings.pools.realtime_threads)
        self._router.after_fork(self._lanes)
        self._worker.after_fork()
        self._promises.after_fork()
        self._pressure.after_fork()
        self._setup_lock = threading.Lock()
        self._stop = threading.Event()
        self._replayer.after_fork()

    def close(self) -> None:
        """Stop workers and close every connection; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._pressure.stop()
        self._replayer.stop()
        if self._clock_sync.moved:  # the next process, here or on another host, starts above us
            self._clock_sync.sync()
        self._lanes.shutdown()
        self._stores.close()
        self._spool.close()
        self._catalog.release()

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


def _after_fork(ref: weakref.ref[Persistio]) -> None:
    store = ref()
    if store is not None:
        store._after_fork()


def _joined(urls: str | Sequence[str] | None) -> str | None:
    """A list of URLs is a primary followed by its fallbacks: kept as "url,url"."""
    if isinstance(urls, list | tuple) and all(isinstance(u, str) for u in urls):
        return ",".join(urls)
    return urls  # type: ignore[return-value]  # anything else: open_backend names the setting


def _typed(bound: BoundIntent, as_type: object, verb: str) -> BoundIntent:
    """``bound``, once ``as_type`` (if given) is checked to be the type it stores."""
    if as_type is not None and as_type is not bound.stored:
        name = getattr(as_type, "__qualname__", repr(as_type))
        raise ValidationError(
            f"{verb}({bound.model.__qualname__}, {bound.name!r}, as_type={name}): this intent "
            f"stores {bound.stored.__qualname__}"
        )
    return bound


def _scope_of(models: object) -> frozenset[str] | None:
    """The model names ``Persistio(models=...)`` covers; None: every declared model."""
    if models is None:
        return None
    if not isinstance(models, list | tuple | set | frozenset):
        raise ConfigError(
            f"Persistio(models={models!r}): pass a list of @persist model classes (or None: all)"
        )
    names = set()
    for model in models:
        if not isinstance(model, type) or "__persistio_plan__" not in model.__dict__:
            raise ConfigError(
                f"Persistio(models=...): {model!r} is not a model: decorate it with @persist"
            )
        names.add(plan_of(model).model_name)
    return frozenset(names)
