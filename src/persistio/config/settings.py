"""The store's settings, grouped: timeouts, pools, the spool's limits and the breaker policy.

``Persistio(timeouts=pio.Timeouts(realtime=1.0), spool_limits=pio.SpoolLimits(max_items=10_000))``
reads better than a long keyword list; the flat keywords of earlier versions
(``realtime_deadline=``, ``spool_max_items=`` ...) keep working and fill in the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from typing import Any

from persistio.errors import ConfigError


@dataclass(frozen=True)
class Timeouts:
    """Seconds. ``realtime`` bounds a save's REALTIME writes and every backend request (how long
    a deferred task a worker took stays its own is ``TaskQueues(visibility=)``)."""

    connect: float = 5.0
    realtime: float = 5.0


@dataclass(frozen=True)
class Pools:
    """Connections and threads."""

    size: int = 5  # pooled connections per server (PostgreSQL, Redis: twice as many)
    realtime_threads: int = 8  # per tier, for a save that writes to several blocking servers
    worker_batch: int = 256  # deferred tasks a worker takes at a time
    group_max: int = 256  # saves one flush to a server may carry (group commit)


@dataclass(frozen=True)
class SpoolLimits:
    """The local spool that holds writes while their server is down."""

    max_items: int = 1_000_000
    max_bytes: int = 1 << 30
    full_timeout: float = 5.0  # a save waits this long for room before it is refused
    replay_interval: float = 0.2
    # a spooled or outboxed task of a model this process does not know waits this long (a
    # rolling deploy: another process may know it) before it is set aside as a dead letter
    unknown_model_grace: float = 600.0


@dataclass(frozen=True)
class BreakerPolicy:
    """Open a backend's circuit after ``threshold`` failures in a row; probe after ``reset``
    seconds, doubling while failures continue, up to ``max_reset``."""

    threshold: int = 3
    reset: float = 0.5
    max_reset: float = 5.0


@dataclass(frozen=True)
class TaskQueues:
    """The deferred-task queues (one stream per priority).

    ``partitions`` spreads each priority over that many streams, which a Redis Cluster puts on
    different masters (1 keeps one stream per priority, under the names of earlier versions);
    ``replicas`` is how many Redis replicas must hold an enqueued task before the save that
    deferred it returns (``WAIT``; 0: the master's acknowledgement is enough); ``visibility``
    is how many seconds a task a worker took stays its own: past that (the worker died, or
    hangs) another worker takes it over.

    Promises (each deferred intent's ``within``): an intent with ``on_lag="slow"`` or
    ``"shed"`` pushes back once its queue runs later than ``lag_factor * within``; a slowed save
    waits at most ``slow_wait`` seconds; queues are looked at every ``pressure_refresh``
    seconds; ``status()`` reports the share done in time over the last ``lag_window`` seconds.
    A worker running a NORMAL or LOW batch looks for higher-priority work every
    ``preempt_every`` tasks, and runs it first.
    """

    partitions: int = 1
    replicas: int = 0
    visibility: float = 60.0
    lag_factor: float = 1.0
    slow_wait: float = 1.0
    pressure_refresh: float = 0.25
    lag_window: float = 60.0
    preempt_every: int = 64


@dataclass(frozen=True)
class Settings:
    timeouts: Timeouts = field(default_factory=Timeouts)
    pools: Pools = field(default_factory=Pools)
    spool_limits: SpoolLimits = field(default_factory=SpoolLimits)
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    task_queues: TaskQueues = field(default_factory=TaskQueues)
    dedup_window: timedelta = timedelta(hours=1)
    # a timestamp seen further ahead of this host's clock is not followed (see clock.py)
    max_clock_skew: timedelta = timedelta(minutes=5)


# flat keyword (earlier versions) -> (group, field)
FLAT = {
    "connect_timeout": ("timeouts", "connect"),
    "realtime_deadline": ("timeouts", "realtime"),
    "pool_size": ("pools", "size"),
    "realtime_threads": ("pools", "realtime_threads"),
    "worker_batch": ("pools", "worker_batch"),
    "spool_max_items": ("spool_limits", "max_items"),
    "spool_max_bytes": ("spool_limits", "max_bytes"),
    "spool_full_timeout": ("spool_limits", "full_timeout"),
    "replay_interval": ("spool_limits", "replay_interval"),
    "breaker_threshold": ("breaker", "threshold"),
    "breaker_reset": ("breaker", "reset"),
    "queue_partitions": ("task_queues", "partitions"),
    "queue_replicas": ("task_queues", "replicas"),
}
GROUPS = {
    "timeouts": Timeouts,
    "pools": Pools,
    "spool_limits": SpoolLimits,
    "breaker": BreakerPolicy,
    "task_queues": TaskQueues,
}
# int settings whose smallest value is not 1, and those with a largest one
LOWEST = {("task_queues", "replicas"): 0}
HIGHEST = {("task_queues", "partitions"): 256, ("task_queues", "replicas"): 16}


def resolve(
    groups: dict[str, Any],
    flat: dict[str, Any],
    dedup_window: Any,
    max_clock_skew: Any = timedelta(minutes=5),
) -> Settings:
    """Settings from the grouped objects and the flat keywords; ConfigError names a bad one."""
    chosen: dict[str, Any] = {}
    for name, cls in GROUPS.items():
        given = groups.get(name)
        if given is not None and not isinstance(given, cls):
            raise ConfigError(f"Persistio({name}={given!r}): use pio.{cls.__name__}(...)")
        chosen[name] = given if given is not None else cls()
    for key, value in flat.items():
        group, attr = FLAT[key]
        if groups.get(group) is not None:
            raise ConfigError(
                f"Persistio({key}=...) and Persistio({group}=...) both set {group}.{attr}: "
                "use one of them"
            )
        chosen[group] = replace(chosen[group], **{attr: value})
    for name in GROUPS:
        _check(name, chosen[name])
    if not isinstance(dedup_window, timedelta) or dedup_window <= timedelta(0):
        raise ConfigError(f"Persistio(dedup_window={dedup_window!r}): use a positive timedelta")
    if not isinstance(max_clock_skew, timedelta) or max_clock_skew < timedelta(0):
        raise ConfigError(
            f"Persistio(max_clock_skew={max_clock_skew!r}): use a timedelta of zero or more"
        )
    return Settings(dedup_window=dedup_window, max_clock_skew=max_clock_skew, **chosen)


def _check(group: str, value: Any) -> None:
    for f in fields(value):
        v = getattr(value, f.name)
        flat = next((k for k, (g, a) in FLAT.items() if (g, a) == (group, f.name)), None)
        label = f"Persistio({flat}={v!r})" if flat else f"{type(value).__name__}({f.name}={v!r})"
        if f.type in ("int", int):
            low = LOWEST.get((group, f.name), 1)
            high = HIGHEST.get((group, f.name))
            if not isinstance(v, int) or isinstance(v, bool) or v < low or (high and v > high):
                within = f"from {low} to {high}" if high else f">= {low}"
                raise ConfigError(f"{label}: use an int {within}")
        elif not isinstance(v, int | float) or isinstance(v, bool) or v <= 0:
            raise ConfigError(f"{label}: use seconds > 0")
