"""Prometheus metrics of a store: ``persistio.metrics.register(store, registry)``.

Needs ``persistio[metrics]`` (prometheus-client). Two sources, so a save pays almost nothing:

- at scrape time, the collector reads ``store.status()``: backends, circuits, queue and stream
  depths and ages, the spool, and the counters the store keeps anyway (drops, retries, dead
  letters, replays, ...), which are shared by every process using the same spool file;
- a probe around saves and worker batches counts each save's outcome per intent and observes
  the ack latency and the deferred lag into histograms. Its counts live in per-thread
  dictionaries that the scrape adds up: no lock is taken on the save path.

``persistio worker --metrics-port PORT`` serves them over HTTP; the names are listed in
docs/operations.md.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from persistio.errors import ConfigError
from persistio.write.probes import Probe, attach

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry
    from prometheus_client.samples import Sample

    from persistio.model.tasks import SavePlan, Work
    from persistio.write.probes import Errors, SaveCall, TasksCall
    from persistio.write.router import Receipt

try:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
except ImportError:  # pragma: no cover - checked by register()
    _MISSING = True
else:
    _MISSING = False

# seconds; a save answers in milliseconds, a deferred write in well under a second when the
# workers keep up (the upper buckets are for a backlog)
ACK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
PRIORITY_NAMES = {0: "realtime", 1: "high", 2: "normal", 3: "low"}
CIRCUIT_STATES = ("closed", "open", "half_open")


class _Shards:
    """Counts and histograms kept per thread: a thread writes only its own dictionaries, a
    scrape adds them all up (a dict or list copy is atomic under the GIL)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()  # taken once per thread, when its shard is made
        self._all: list[tuple[dict[Any, int], dict[Any, list[float]]]] = []

    def mine(self) -> tuple[dict[Any, int], dict[Any, list[float]]]:
        try:
            return self._local.shard  # type: ignore[no-any-return]
        except AttributeError:
            shard: tuple[dict[Any, int], dict[Any, list[float]]]
            shard = ({}, {})
            with self._lock:
                self._all.append(shard)
            self._local.shard = shard
            return shard

    def counts(self) -> dict[Any, int]:
        total: dict[Any, int] = {}
        with self._lock:
            shards = list(self._all)
        for counts, _ in shards:
            for key, count in counts.copy().items():
                total[key] = total.get(key, 0) + count
        return total

    def histograms(self) -> dict[Any, list[float]]:
        total: dict[Any, list[float]] = {}
        with self._lock:
            shards = list(self._all)
        for _, hists in shards:
            for key, h in hists.copy().items():
                mine = list(h)
                found = total.get(key)
                if found is not None:
                    mine = [a + b for a, b in zip(found, mine, strict=True)]
                total[key] = mine
        return total


def _bump(counts: dict[Any, int], key: Any) -> None:
    counts[key] = counts.get(key, 0) + 1


def _observe(
    hists: dict[Any, list[float]],
    key: Any,
    bounds: Sequence[float],
    value: float,
) -> None:
    h = hists.get(key)
    if h is None:
        # one slot per bucket, one for +Inf, then the sum
        h = hists[key] = [0.0] * (len(bounds) + 2)
    h[bisect.bisect_left(bounds, value)] += 1
    h[-1] += value


class PersistioMetrics(Probe):
    """A Prometheus collector of one store, and the probe that feeds its histograms.

    Made by ``register``; ``close()`` detaches it from the store (it stays registered).
    """

    def __init__(self, store: Any, *, prefix: str = "persistio") -> None:
        if _MISSING:
            raise ConfigError(
                "persistio.metrics needs prometheus-client: pip install 'persistio[metrics]'"
            )
        from persistio.write.probes import router_of

        router_of(store)  # a store, or ValidationError
        self._store = store.sync if hasattr(store, "sync") else store
        self.prefix = prefix
        self._shards = _Shards()
        self._transitions: dict[tuple[str, str], int] = {}
        self._transitions_lock = threading.Lock()  # circuit changes are rare
        self._detach = [
            attach(self._store, self),
            self._store.on("circuit_opened", self._circuit),
            self._store.on("circuit_closed", self._circuit),
        ]

    def close(self) -> None:
        """Stop feeding the histograms and counting circuit changes."""
        for detach in self._detach:
            detach()
        self._detach = []

    # -- the probe: on the save path ------------------------------------------------------------

    def save(self, plans: Sequence[SavePlan], call: SaveCall) -> list[Receipt]:
        # the cheapest keys: (BoundIntent, state) per write, the model name per save; the
        # labels are spelled out at scrape time, and a save's count is its latency's count
        started = time.perf_counter()
        try:
            receipts = call(plans)
        except BaseException:
            counts, _ = self._shards.mine()
            for plan in plans:
                _bump(counts, ("errors", plan.work[0].task.model if plan.work else ""))
            raise
        elapsed = time.perf_counter() - started
        counts, hists = self._shards.mine()
        get = counts.get
        for plan in plans:
            works = plan.work
            for work in works:
                key = (work.bound, work.state)
                counts[key] = get(key, 0) + 1
            if works:
                _observe(hists, works[0].task.model, ACK_BUCKETS, elapsed)
            if plan.skipped:
                model = works[0].task.model if works else ""
                for name in plan.skipped:
                    _bump(counts, ("skipped", model, name))
        return receipts

    def tasks(self, kind: str, works: Sequence[Work], call: TasksCall) -> Errors:
        errors = call(works)
        if kind != "deferred" or not works:
            return errors
        now_us = time.time() * 1_000_000
        _, hists = self._shards.mine()
        for work, error in zip(works, errors, strict=True):
            if error is None:
                priority = PRIORITY_NAMES.get(work.task.priority, str(work.task.priority))
                lag = max(0.0, (now_us - work.task.ts) / 1_000_000)
                _observe(hists, ("lag", priority), LAG_BUCKETS, lag)
        return errors

    def _circuit(self, event: str, fields: Mapping[str, Any]) -> None:
        key = (str(fields.get("tier", "")), "open" if event == "circuit_opened" else "closed")
        with self._transitions_lock:
            self._transitions[key] = self._transitions.get(key, 0) + 1

    # -- the collector: at scrape time ----------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        """The families, without asking the store (so registering does no I/O)."""
        return iter(self._families().values())

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        self._fill_probe(families)
        try:
            status = self._store.status()
        except Exception:  # a closed store: what the probe counted is still worth a scrape
            status = None
        if status is not None:
            _fill_status(families, status)
        with self._transitions_lock:
            transitions = dict(self._transitions)
        for (tier, to), n in sorted(transitions.items()):
            families["circuit_transitions"].add_metric([tier, to], n)
        return iter(families.values())

    def _fill_probe(self, families: dict[str, Any]) -> None:
        writes: dict[tuple[str, str, str], int] = {}
        for key, n in self._shards.counts().items():
            first, *labels = key
            if isinstance(first, str):
                families[first].add_metric(labels, n)
            else:  # (BoundIntent, state): several bounds may share a name (one per model)
                spelled = (first.name, first.tier.value, labels[0] or "failed")
                writes[spelled] = writes.get(spelled, 0) + n
        for labels, n in sorted(writes.items()):
            families["writes"].add_metric(list(labels), n)
        for key, h in sorted(self._shards.histograms().items(), key=lambda kv: str(kv[0])):
            kind, label = ("ack", key) if isinstance(key, str) else key
            bounds = ACK_BUCKETS if kind == "ack" else LAG_BUCKETS
            if kind == "ack":
                families["saves"].add_metric([label], h[-2] + sum(h[:-2]))
            cumulative: list[tuple[str, float]] = []
            running = 0.0
            for bound, hits in zip((*bounds, float("inf")), h[:-1], strict=True):
                running += hits
                cumulative.append((_le(bound), running))
            family = families[kind]
            assert isinstance(family, HistogramMetricFamily)
            family.add_metric([label], cumulative, sum_value=h[-1])

    def _families(self) -> dict[str, Any]:
        p = self.prefix
        made: dict[str, Any] = {}
        for key, (kind, name, doc, labels) in _SPECS.items():
            made[key] = kind(f"{p}_{name}", doc, labels=list(labels))
        return made


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def _fill_status(families: dict[str, Any], status: Mapping[str, Any]) -> None:
    def add(key: str, labels: Sequence[str], value: float | None) -> None:
        if value is not None:
            families[key].add_metric(list(labels), value)

    for tier, b in status["backends"].items():
        add("backend_up", [tier], 1.0 if b["healthy"] else 0.0)
        for state in CIRCUIT_STATES:
            add("circuit_state", [tier, state], 1.0 if b["circuit"] == state else 0.0)
        add("circuit_opened", [tier], b["circuit_opened"])
        add("circuit_rejected", [tier], b["circuit_rejected"])
    for place, rows in (("queue", status["queues"]), ("stream", status["streams"])):
        for name, q in rows.items():
            if "error" in q:
                continue
            add(f"{place}_pending", [name], q["pending"])
            add(f"{place}_oldest_age", [name], q["oldest_age_s"] or 0.0)
            add(f"{place}_dead_letters", [name], q["dead_letters"])
    spool = status["spool"]
    add("spool_items", [], spool["depth"])
    add("spool_bytes", [], spool["bytes"])
    add("spool_dead_letters", [], spool["dead_letters"])
    for tier, t in spool["by_tier"].items():
        add("spool_tier_items", [tier], t["items"])
        add("spool_oldest_age", [tier], t["oldest_age_s"] or 0.0)
    add("dead_letters", [], status["dead_letters"])
    for key, n in status["dropped"].items():
        tier, _, intent = key.partition(":")
        add("dropped", [intent, tier], n)
    for label, source in _BY_NAME.items():
        for name, n in status[source].items():
            add(label, [name], n)
    for label in ("buffered", "replayed", "worker_errors", "dead_letters_purged"):
        add(label, [], status[label])
    add("hook_errors", [], status["hooks"]["errors"])
    for server, g in status["group_commit"].items():
        add("group_commit_flushes", [server], g["flushes"])
        add("group_commit_saves", [server], g["saves"])
    _fill_promises(add, status)


def _fill_promises(add: Callable[[str, Sequence[str], float | None], None], status: Any) -> None:
    """Time slices: each deferred intent's promise (``within``) against what its workers did,
    the saves backpressure slowed or shed, and the load the workers face."""
    for intent, p in status.get("promises", {}).items():
        add("promise_within", [intent, p["priority"]], p["within_s"])
        add("promise_share", [intent], p["within_share"])
        add("promise_lag_p99", [intent], p["lag_p99_s"])
        add("promise_on_time", [intent], p["total_on_time"])
        add("promise_late", [intent], p["total_late"])
    for label in ("slowed", "shed"):
        for intent, n in status.get(label, {}).items():
            add(label, [intent], n)
    load = status.get("load", {})
    for priority, row in load.get("by_priority", {}).items():
        add("arrival_rate", [priority], row["arrival_per_s"])
        add("service_rate", [priority], row["served_per_s"])
        add("lateness", [priority], row["lateness_s"])
    add("workers_needed", [], load.get("workers_needed"))


# metric (counter) <- a status() mapping of name -> count
_BY_NAME = {
    "retries": "retries",
    "dead_lettered": "dead_lettered",
    "dead_letters_dropped": "dead_letters_dropped",
    "superseded": "superseded",
    "failed": "failed",
    "trimmed": "trimmed",
}

if not _MISSING:
    C, G, H = CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
    # key -> (family, name without the prefix, help, labels); counters get "_total" appended
    _SPECS: dict[str, tuple[Callable[..., Metric], str, str, tuple[str, ...]]] = {
        "saves": (C, "saves", "Saves (objects) that returned a receipt", ("model",)),
        "errors": (C, "save_errors", "Saves that raised", ("model",)),
        "writes": (
            C,
            "writes",
            "Each intent's write of a save, by outcome (done, deferred, buffered, dropped, "
            "superseded, failed)",
            ("intent", "tier", "outcome"),
        ),
        "skipped": (C, "skipped", "Intents a when= predicate skipped", ("model", "intent")),
        "ack": (H, "save_seconds", "Time a save took to answer (ack latency)", ("model",)),
        "lag": (
            H,
            "deferred_lag_seconds",
            "From a save to its deferred write landing (enqueue to effect)",
            ("priority",),
        ),
        "backend_up": (G, "backend_up", "1 if the tier's backend answered a ping", ("tier",)),
        "circuit_state": (G, "circuit_state", "1 for the circuit's state", ("tier", "state")),
        "circuit_opened": (C, "circuit_opened", "Times the circuit opened", ("tier",)),
        "circuit_rejected": (
            C,
            "circuit_rejected",
            "Calls refused by an open circuit",
            ("tier",),
        ),
        "circuit_transitions": (
            C,
            "circuit_transitions",
            "Circuit changes seen since the metrics were registered",
            ("tier", "to"),
        ),
        "queue_pending": (G, "queue_pending", "Deferred tasks not yet applied", ("priority",)),
        "queue_oldest_age": (
            G,
            "queue_oldest_age_seconds",
            "Age of the oldest pending task",
            ("priority",),
        ),
        "queue_dead_letters": (
            G,
            "queue_dead_letters",
            "Dead letters held by a task queue",
            ("priority",),
        ),
        "stream_pending": (G, "stream_pending", "Stream entries not yet acked", ("stream",)),
        "stream_oldest_age": (
            G,
            "stream_oldest_age_seconds",
            "Age of the oldest unacked entry",
            ("stream",),
        ),
        "stream_dead_letters": (
            G,
            "stream_dead_letters",
            "Dead letters held by a stream",
            ("stream",),
        ),
        "spool_items": (G, "spool_items", "Writes waiting in the local spool", ()),
        "spool_bytes": (G, "spool_bytes", "Bytes of the writes in the spool", ()),
        "spool_dead_letters": (G, "spool_dead_letters", "Spooled writes set aside", ()),
        "spool_tier_items": (G, "spool_tier_items", "Spooled writes per tier", ("tier",)),
        "spool_oldest_age": (
            G,
            "spool_oldest_age_seconds",
            "Age of the oldest spooled write",
            ("tier",),
        ),
        "dead_letters": (G, "dead_letters", "Dead letters held, everywhere", ()),
        "dead_lettered": (C, "dead_lettered", "Items set aside after failing", ("where",)),
        "dead_letters_dropped": (
            C,
            "dead_letters_dropped",
            "Dead letters dropped to keep within their bounds",
            ("where",),
        ),
        "dead_letters_purged": (C, "dead_letters_purged", "Dead letters purged", ()),
        "dropped": (C, "dropped", "Writes dropped on an outage", ("intent", "tier")),
        "retries": (C, "retries", "Redeliveries after a failure", ("stream",)),
        "superseded": (C, "superseded", "Writes a newer stored value beat", ("intent",)),
        "failed": (C, "failed", "Writes that failed after others landed", ("intent",)),
        "trimmed": (C, "trimmed", "Stream entries trimmed unconsumed", ("stream",)),
        "buffered": (C, "buffered", "Writes buffered in the spool", ()),
        "replayed": (C, "replayed", "Spooled writes replayed", ()),
        "worker_errors": (C, "worker_errors", "Worker step parts that raised", ()),
        "hook_errors": (C, "hook_errors", "store.on() hooks that raised", ()),
        "group_commit_flushes": (
            C,
            "group_commit_flushes",
            "Round trips of the group commit",
            ("server",),
        ),
        "group_commit_saves": (
            C,
            "group_commit_saves",
            "Saves carried by the group commit",
            ("server",),
        ),
        "promise_within": (
            G,
            "promise_within_seconds",
            "The time slice a deferred intent promises (within=)",
            ("intent", "priority"),
        ),
        "promise_share": (
            G,
            "promise_within_share",
            "Share of an intent's tasks done within its slice, over the sliding window",
            ("intent",),
        ),
        "promise_lag_p99": (
            G,
            "promise_lag_p99_seconds",
            "p99 of save-to-effect lag over the sliding window",
            ("intent",),
        ),
        "promise_on_time": (C, "promise_on_time", "Tasks done within their slice", ("intent",)),
        "promise_late": (C, "promise_late", "Tasks done after their slice", ("intent",)),
        "slowed": (C, "slowed", "Saves backpressure made wait (on_lag='slow')", ("intent",)),
        "shed": (C, "shed", "Tasks backpressure dropped (on_lag='shed')", ("intent",)),
        "arrival_rate": (G, "arrival_per_second", "Deferred tasks arriving", ("priority",)),
        "service_rate": (G, "served_per_second", "Deferred tasks served", ("priority",)),
        "lateness": (
            G,
            "lateness_seconds",
            "How late a priority's queue runs (oldest age, or depth over service rate)",
            ("priority",),
        ),
        "workers_needed": (G, "workers_needed", "Worker threads the current load needs", ()),
    }


def register(
    store: Any, registry: CollectorRegistry | None = None, *, prefix: str = "persistio"
) -> PersistioMetrics:
    """Register ``store``'s metrics on ``registry`` (default: prometheus_client's global one).

    Args:
        store: A ``Persistio`` or ``AsyncPersistio``.
        registry: Where the metrics are served from (one store per registry: the names are
            fixed).
        prefix: The metric names' prefix.

    Returns:
        The collector; ``registry.unregister(it)`` and ``it.close()`` undo this.

    Raises:
        ConfigError: prometheus-client is not installed (``pip install 'persistio[metrics]'``).
    """
    metrics = PersistioMetrics(store, prefix=prefix)
    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    try:
        registry.register(metrics)
    except BaseException:
        metrics.close()
        raise
    return metrics


def serve(store: Any, port: int, addr: str = "0.0.0.0") -> Callable[[], None]:
    """Serve ``store``'s metrics on http://addr:port/metrics from a registry of their own;
    returns a function that stops the server. What ``persistio worker --metrics-port`` runs."""
    if _MISSING:
        raise ConfigError(
            "--metrics-port needs prometheus-client: pip install 'persistio[metrics]'"
        )
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    metrics = register(store, registry)
    server, thread = start_http_server(port, addr, registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        metrics.close()

    return stop


def samples(registry: CollectorRegistry, name: str) -> Iterable[Sample]:
    """Every sample of the metric ``name`` (without a ``_total``/``_bucket`` suffix) in
    ``registry``: a helper for tests and scripts."""
    for family in registry.collect():
        if family.name == name:
            yield from family.samples


__all__ = ["ACK_BUCKETS", "LAG_BUCKETS", "PersistioMetrics", "register", "samples", "serve"]
