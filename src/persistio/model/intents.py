"""The four persistence intents a model can declare, and their priorities.

An intent says *why* a piece of data is stored and for how long it matters. Constructing one only
records the declaration; ``@persist`` checks it against the model (see ``model.py``), so that every
error can name both the model and the intent.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import IntEnum, StrEnum
from typing import Any, ClassVar, Literal

OnOutage = Literal["buffer", "drop", "fail"]
ON_OUTAGE_CHOICES: tuple[OnOutage, ...] = ("buffer", "drop", "fail")
OnLag = Literal["accept", "slow", "shed"]
ON_LAG_CHOICES: tuple[OnLag, ...] = ("accept", "slow", "shed")

MAX_PARTITIONS = 256  # see partitions.py: names are found by a search per partition
MAX_REPLICAS = 16

# Intent names become table, stream and key names: nothing else is ever interpolated into SQL,
# CQL or Redis key names, so this pattern is the whole injection defence for identifiers.
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,47}")


class Priority(IntEnum):
    """When a task runs: REALTIME before ``save`` returns, the others by workers, highest first."""

    REALTIME = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3


# by when a deferred task of each priority must be done, unless its intent says within=
DEFAULT_WITHIN: dict[Priority, timedelta] = {
    Priority.HIGH: timedelta(seconds=5),
    Priority.NORMAL: timedelta(minutes=1),
    Priority.LOW: timedelta(minutes=10),
}

REALTIME = Priority.REALTIME
HIGH = Priority.HIGH
NORMAL = Priority.NORMAL
LOW = Priority.LOW


class Tier(StrEnum):
    """The persistence types, one backend each."""

    TRANSITORY = "transitory"
    VOLATILE = "volatile"
    ACID = "acid"
    AMORPHOUS = "amorphous"


def is_safe_name(name: object) -> bool:
    """True when ``name`` may be used as a table, stream or key name."""
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None


def _as_fields(value: object) -> tuple[str, ...] | None:
    """Accept ``"a"`` or ``("a", "b")``; None when it is neither."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, tuple | list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


@dataclass(frozen=True, eq=False)
class Intent:
    """Options shared by every tier."""

    tier: ClassVar[Tier]
    default_priority: ClassVar[Priority]
    default_on_outage: ClassVar[OnOutage]

    name: str
    priority: Priority
    on_outage: OnOutage
    project: Callable[[Any], Any] | None
    when: Callable[[Any], bool] | None
    # by when a deferred task must be done (see promises.py); None for a REALTIME intent
    within: timedelta | None
    on_lag: OnLag
    unknown_options: tuple[str, ...] = field(repr=False)
    # whether on_lag="shed" may drop its tasks (never for writes that must not be lost)
    sheddable: ClassVar[bool] = True

    def key_fields(self) -> tuple[str, ...]:
        """The stored object's fields that identify one stored value (for a stream: those that
        pick its partition, so entries with equal values stay in order)."""
        return ()

    def problems(self) -> list[str]:
        """What is wrong with the declaration on its own (model-independent checks)."""
        found: list[str] = []
        if not is_safe_name(self.name):
            found.append(
                f"name {self.name!r} is not a safe identifier: use 1-48 characters of "
                "[a-z0-9_], starting with a letter (it becomes a table/stream/key name)"
            )
        # declarations arrive untyped at run time: check what the annotations only promise
        priority: object = self.priority
        project: object = self.project
        when: object = self.when
        if not isinstance(priority, Priority):
            found.append(f"priority={priority!r}: use pio.REALTIME, HIGH, NORMAL or LOW")
        if self.on_outage not in ON_OUTAGE_CHOICES:
            found.append(f"on_outage={self.on_outage!r}: use one of {ON_OUTAGE_CHOICES}")
        if project is not None and not callable(project):
            found.append("project= must be a callable that returns the object to store")
        if when is not None and not callable(when):
            found.append("when= must be a callable predicate taking the object")
        found.extend(self._promise_problems())
        found.extend(self._unknown_option(opt) for opt in self.unknown_options)
        return found

    def _promise_problems(self) -> list[str]:
        found: list[str] = []
        on_lag: object = self.on_lag
        if on_lag not in ON_LAG_CHOICES:
            found.append(f"on_lag={on_lag!r}: use one of {ON_LAG_CHOICES}")
        if self.priority is Priority.REALTIME:
            if self.within is not None or on_lag != "accept":
                found.append(
                    "within= and on_lag= are for deferred intents (priority HIGH, NORMAL or "
                    "LOW): a REALTIME intent is written before save() returns"
                )
            return found
        if not _positive(self.within):
            found.append(f"within={self.within!r}: use a positive timedelta")
        if on_lag == "shed" and not self.sheddable:
            found.append(
                f"on_lag='shed' would drop {type(self).__name__} writes, which must not be "
                "lost: use on_lag='slow' or 'accept'"
            )
        return found

    def _unknown_option(self, option: str) -> str:
        kind = type(self).__name__
        article = "an" if kind[0] in "AEIOU" else "a"
        names = self.option_names()
        close = difflib.get_close_matches(option, names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return (
            f"option {option!r} does not fit {article} {kind} intent ({hint}it takes: "
            f"{', '.join(names)})"
        )

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The keyword options a user passes to the intent's constructor."""
        params = inspect.signature(cls.__init__).parameters.values()
        return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


Encoding = Literal["msgpack", "json"]
ENCODINGS: tuple[Encoding, ...] = ("msgpack", "json")


def _encoding_problems(encoding: object) -> list[str]:
    if encoding in ENCODINGS:
        return []
    return [
        f"encoding={encoding!r}: use 'msgpack' (compact, the default) or 'json' (readable "
        "with redis-cli and any JSON library)"
    ]


def _shared(
    priority: Priority | None,
    on_outage: OnOutage | None,
    cls: type[Intent],
) -> tuple[Priority, OnOutage]:
    return (
        cls.default_priority if priority is None else priority,
        cls.default_on_outage if on_outage is None else on_outage,
    )


@dataclass(frozen=True, eq=False, init=False)
class Transitory(Intent):
    """Kept until a consumer acknowledges it, then expunged (a stream with consumer groups)."""

    tier = Tier.TRANSITORY
    default_priority = Priority.REALTIME
    default_on_outage = "buffer"

    max_age: timedelta | None
    max_len: int | None
    max_deliveries: int
    visibility: timedelta
    retry_backoff: timedelta
    dead_max: int
    dead_max_age: timedelta
    partitions: int
    order_by: tuple[str, ...]
    replicas: int
    encoding: Encoding
    consumers: tuple[str, ...]

    def __init__(
        self,
        name: str,
        *,
        consumers: tuple[str, ...] | str = (),
        max_age: timedelta | None = None,
        max_len: int | None = 1_000_000,
        max_deliveries: int = 5,
        visibility: timedelta = timedelta(seconds=30),
        retry_backoff: timedelta = timedelta(milliseconds=200),
        dead_max: int = 10_000,
        dead_max_age: timedelta = timedelta(days=7),
        partitions: int = 1,
        order_by: tuple[str, ...] | str = (),
        replicas: int = 0,
        encoding: Encoding = "msgpack",
        priority: Priority | None = None,
        on_outage: OnOutage | None = None,
        project: Callable[[Any], Any] | None = None,
        when: Callable[[Any], bool] | None = None,
        within: timedelta | None = None,
        on_lag: OnLag = "accept",
        **other: object,
    ) -> None:
        prio, outage = _shared(priority, on_outage, Transitory)
        _init(self, name, prio, outage, project, when, tuple(other), within, on_lag)
        object.__setattr__(self, "max_age", max_age)
        object.__setattr__(self, "max_len", max_len)
        object.__setattr__(self, "max_deliveries", max_deliveries)
        object.__setattr__(self, "visibility", visibility)
        object.__setattr__(self, "retry_backoff", retry_backoff)
        object.__setattr__(self, "dead_max", dead_max)
        object.__setattr__(self, "dead_max_age", dead_max_age)
        object.__setattr__(self, "partitions", partitions)
        object.__setattr__(self, "order_by", _as_fields(order_by) or order_by)
        object.__setattr__(self, "replicas", replicas)
        object.__setattr__(self, "encoding", encoding)
        object.__setattr__(self, "consumers", _as_fields(consumers) or consumers)

    def key_fields(self) -> tuple[str, ...]:
        """The fields whose values pick an entry's partition (``order_by``)."""
        order_by: object = self.order_by
        return self.order_by if isinstance(order_by, tuple) else ()

    def problems(self) -> list[str]:
        found = super().problems()
        found.extend(self._scale_problems())
        found.extend(_encoding_problems(self.encoding))
        if self.max_age is not None and not _positive(self.max_age):
            found.append(f"max_age={self.max_age!r}: use a positive timedelta, or None")
        if self.max_len is not None and (not isinstance(self.max_len, int) or self.max_len < 1):
            found.append(f"max_len={self.max_len!r}: use an int >= 1, or None")
        if not isinstance(self.max_deliveries, int) or self.max_deliveries < 1:
            found.append(f"max_deliveries={self.max_deliveries!r}: use an int >= 1")
        if not _positive(self.visibility):
            found.append(f"visibility={self.visibility!r}: use a positive timedelta")
        if not _positive(self.retry_backoff):
            found.append(f"retry_backoff={self.retry_backoff!r}: use a positive timedelta")
        if not isinstance(self.dead_max, int) or self.dead_max < 1:
            found.append(f"dead_max={self.dead_max!r}: use an int >= 1")
        if not _positive(self.dead_max_age):
            found.append(f"dead_max_age={self.dead_max_age!r}: use a positive timedelta")
        return found

    def _scale_problems(self) -> list[str]:
        found: list[str] = []
        partitions: object = self.partitions
        if not _int_in(partitions, 1, MAX_PARTITIONS):
            found.append(f"partitions={partitions!r}: use an int from 1 to {MAX_PARTITIONS}")
        order_by: object = self.order_by
        if not isinstance(order_by, tuple) or not all(isinstance(f, str) for f in order_by):
            found.append("order_by= must name fields of the object, e.g. order_by=('user_id',)")
        elif len(set(order_by)) != len(order_by):
            found.append(f"order_by={order_by!r} names a field twice")
        found.extend(_consumer_problems(self.consumers))
        if not _int_in(self.replicas, 0, MAX_REPLICAS):
            found.append(
                f"replicas={self.replicas!r}: use an int from 0 to {MAX_REPLICAS} (replicas "
                "that must hold an entry before its save returns)"
            )
        return found


def _consumer_problems(consumers: object) -> list[str]:
    """``consumers=``: the names of the stream's consumer groups, each a safe identifier."""
    if not isinstance(consumers, tuple) or not all(isinstance(c, str) for c in consumers):
        return ["consumers= must name the stream's consumers, e.g. consumers=('email', 'sms')"]
    found = [
        f"consumers: {c!r} is not a safe identifier: use 1-48 characters of [a-z0-9_], "
        "starting with a letter"
        for c in consumers
        if not is_safe_name(c)
    ]
    if len(set(consumers)) != len(consumers):
        found.append(f"consumers={consumers!r} names a consumer twice")
    return found


@dataclass(frozen=True, eq=False, init=False)
class Volatile(Intent):
    """Useful but rebuildable data with a time to live (a Redis key with an absolute expiry)."""

    tier = Tier.VOLATILE
    default_priority = Priority.REALTIME
    default_on_outage = "drop"

    key: tuple[str, ...]
    ttl: timedelta | None  # required: None only until problems() reports it
    rebuild_from: str | None
    encoding: Encoding

    def __init__(
        self,
        name: str,
        *,
        key: tuple[str, ...] | str = (),
        ttl: timedelta | None = None,
        rebuild_from: str | None = None,
        encoding: Encoding = "msgpack",
        priority: Priority | None = None,
        on_outage: OnOutage | None = None,
        project: Callable[[Any], Any] | None = None,
        when: Callable[[Any], bool] | None = None,
        within: timedelta | None = None,
        on_lag: OnLag = "accept",
        **other: object,
    ) -> None:
        prio, outage = _shared(priority, on_outage, Volatile)
        _init(self, name, prio, outage, project, when, tuple(other), within, on_lag)
        object.__setattr__(self, "key", _as_fields(key) or key)
        object.__setattr__(self, "ttl", ttl)
        object.__setattr__(self, "rebuild_from", rebuild_from)
        object.__setattr__(self, "encoding", encoding)

    def key_fields(self) -> tuple[str, ...]:
        return self.key

    def problems(self) -> list[str]:
        found = super().problems()
        found.extend(_key_problems("key", self.key))
        found.extend(_encoding_problems(self.encoding))
        if self.ttl is None:
            found.append("a Volatile intent needs ttl=timedelta(...): its data must expire")
        elif not _positive(self.ttl):
            found.append(f"ttl={self.ttl!r}: use a positive timedelta")
        if self.rebuild_from is not None and not is_safe_name(self.rebuild_from):
            found.append(f"rebuild_from={self.rebuild_from!r}: name another intent of the model")
        return found


@dataclass(frozen=True, eq=False, init=False)
class Acid(Intent):
    """Committed as a whole or not at all: a table with one typed column per field."""

    tier = Tier.ACID
    default_priority = Priority.REALTIME
    default_on_outage = "fail"
    sheddable = False

    key: tuple[str, ...]
    index: tuple[tuple[str, ...], ...]

    def __init__(
        self,
        name: str,
        *,
        key: tuple[str, ...] | str = (),
        index: Sequence[tuple[str, ...] | str] = (),
        priority: Priority | None = None,
        on_outage: OnOutage | None = None,
        project: Callable[[Any], Any] | None = None,
        when: Callable[[Any], bool] | None = None,
        within: timedelta | None = None,
        on_lag: OnLag = "accept",
        **other: object,
    ) -> None:
        prio, outage = _shared(priority, on_outage, Acid)
        _init(self, name, prio, outage, project, when, tuple(other), within, on_lag)
        object.__setattr__(self, "key", _as_fields(key) or key)
        indexes: Any = index
        if isinstance(index, list | tuple):
            indexes = tuple(_as_fields(i) or i for i in index)
        object.__setattr__(self, "index", indexes)

    def key_fields(self) -> tuple[str, ...]:
        return self.key

    def index_fields(self) -> tuple[str, ...]:
        """Every field an index names (each must be a column usable as a key)."""
        return tuple(dict.fromkeys(f for i in self.index for f in i))

    def problems(self) -> list[str]:
        found = [*super().problems(), *_key_problems("key", self.key)]
        index: object = self.index
        if not isinstance(index, tuple) or not all(
            isinstance(i, tuple) and i and all(isinstance(f, str) for f in i) for i in index
        ):
            found.append(
                "index= must list field tuples, one per index, e.g. index=[('owner_id',), "
                "('owner_id', 'created')]"
            )
        return found


@dataclass(frozen=True, eq=False, init=False)
class Amorphous(Intent):
    """Schemaless, high-volume objects in query-shaped tables (partition + order keys)."""

    tier = Tier.AMORPHOUS
    default_priority = Priority.NORMAL
    default_on_outage = "buffer"

    partition: tuple[str, ...]
    order: tuple[str, ...]
    retain: timedelta | None
    consistency: str | None

    def __init__(
        self,
        name: str,
        *,
        partition: tuple[str, ...] | str = (),
        order: tuple[str, ...] | str = (),
        retain: timedelta | None = None,
        consistency: str | None = None,
        priority: Priority | None = None,
        on_outage: OnOutage | None = None,
        project: Callable[[Any], Any] | None = None,
        when: Callable[[Any], bool] | None = None,
        within: timedelta | None = None,
        on_lag: OnLag = "accept",
        **other: object,
    ) -> None:
        prio, outage = _shared(priority, on_outage, Amorphous)
        _init(self, name, prio, outage, project, when, tuple(other), within, on_lag)
        object.__setattr__(self, "partition", _as_fields(partition) or partition)
        object.__setattr__(self, "order", _as_fields(order) or order)
        object.__setattr__(self, "retain", retain)
        object.__setattr__(self, "consistency", consistency)

    def key_fields(self) -> tuple[str, ...]:
        return (*self.partition, *self.order)

    def problems(self) -> list[str]:
        found = [*super().problems(), *_key_problems("partition", self.partition)]
        order: object = self.order
        if not isinstance(order, tuple) or not all(isinstance(f, str) for f in order):
            found.append("order= must name fields of the object, e.g. order=('at',)")
        if self.retain is not None and (
            not _positive(self.retain) or self.retain.total_seconds() < 1
        ):
            found.append(f"retain={self.retain!r}: use a timedelta of at least one second")
        if self.consistency is not None and self.consistency not in CONSISTENCY_LEVELS:
            found.append(f"consistency={self.consistency!r}: use one of {CONSISTENCY_LEVELS}")
        return found


CONSISTENCY_LEVELS = (
    "ONE",
    "TWO",
    "THREE",
    "QUORUM",
    "ALL",
    "LOCAL_QUORUM",
    "EACH_QUORUM",
    "LOCAL_ONE",
    "ANY",
)


def _init(
    intent: Intent,
    name: str,
    priority: Priority,
    on_outage: OnOutage,
    project: Callable[[Any], Any] | None,
    when: Callable[[Any], bool] | None,
    unknown: tuple[str, ...],
    within: timedelta | None = None,
    on_lag: OnLag = "accept",
) -> None:
    object.__setattr__(intent, "name", name)
    object.__setattr__(intent, "priority", priority)
    object.__setattr__(intent, "on_outage", on_outage)
    object.__setattr__(intent, "project", project)
    object.__setattr__(intent, "when", when)
    object.__setattr__(intent, "unknown_options", unknown)
    if within is None and isinstance(priority, Priority):
        within = DEFAULT_WITHIN.get(priority)
    object.__setattr__(intent, "within", within)
    object.__setattr__(intent, "on_lag", on_lag)


def _int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _positive(value: object) -> bool:
    return isinstance(value, timedelta) and value > timedelta(0)


def _key_problems(option: str, fields: object) -> list[str]:
    if not isinstance(fields, tuple) or not fields:
        return [f"{option}= must name one or more fields of the object, e.g. {option}=('id',)"]
    if len(set(fields)) != len(fields):
        return [f"{option}={fields!r} names a field twice"]
    return []
