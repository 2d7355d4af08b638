"""The per-tier backend contracts: a handful of methods each.

Backends receive plain values (``Column`` specs, rows, msgpack payloads and microsecond write
timestamps) and never model types. Each one resolves writes by write timestamp (last write wins),
so a replayed or redelivered write can never overwrite newer data, and raises
``BackendUnavailable`` when its server cannot be reached (any other failure is a bug or bad data).

One tie-break everywhere: of two writes with equal timestamps (two processes, one microsecond),
the one with the larger write id wins, in every store, so the stores never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Protocol
from urllib.parse import quote
from uuid import UUID

from persistio.model.codec import Column


@dataclass(frozen=True)
class Options:
    """What a backend is built with besides its URL (from the store's settings)."""

    data_dir: Path
    pool_size: int = 5
    connect_timeout: float = 5.0
    request_timeout: float = 10.0  # a call with no deadline of its own never waits longer
    dedup_window_seconds: float = 3_600.0
    # how long an acid delete's tombstone is kept (a save older than the delete that arrives
    # within it never lands)
    tombstone_window_seconds: float = 7 * 86_400.0
    # the store's namespace: a backend that keeps tables of its own (the acid outbox) keeps
    # one set per namespace; intents' tables come already named (TableSpec.name)
    namespace: str = ""


@dataclass(frozen=True)
class TableSpec:
    """An acid or amorphous table: typed columns, key columns, clustering order, TTL."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # acid: the primary key; amorphous: the partition key
    order: tuple[str, ...] = ()  # amorphous clustering columns, queried newest first
    ttl_seconds: int | None = None
    consistency: str | None = None
    indexes: tuple[tuple[str, ...], ...] = ()  # acid: secondary indexes, for find()


@dataclass(frozen=True)
class CountSpec:
    """A count's table: its key columns, its bucket sizes and how long each is kept."""

    name: str
    key: tuple[Column, ...]
    granularities: tuple[int, ...]  # bucket sizes in seconds, ascending
    retain_seconds: tuple[int | None, ...]  # per granularity: kept this long after it ends
    consistency: str | None = None

    def expires_at(self, index: int, bucket_us: int) -> float | None:
        """Epoch seconds when the bucket (of ``granularities[index]``) is past its retain."""
        keep = self.retain_seconds[index]
        if keep is None:
            return None
        return bucket_us / 1e6 + self.granularities[index] + keep


@dataclass(frozen=True)
class StreamSpec:
    """A transitory stream (an intent's, or a task queue) and its delivery rules."""

    name: str
    max_deliveries: int = 5
    visibility_seconds: float = 30.0
    max_age_seconds: float | None = None
    retry_backoff_seconds: float = 0.2  # first retry delay; doubles per delivery
    # entries nobody consumed are trimmed (and counted) past either limit, consumer or not
    max_len: int | None = None
    # dead letters are kept bounded: the oldest go (and are counted) past either limit
    dead_max: int = 10_000
    dead_max_age_seconds: float = 7 * 86_400.0
    # replicas that must hold an entry before its append is acknowledged (Redis WAIT); 0: the
    # server's own acknowledgement is enough
    replicas: int = 0


GROUP_MARK = "~"  # <stream>~<consumer>: the stream of one consumer group of a stream


def hash_tag(name: str) -> str:
    """The stream a (group) stream name belongs to: a group's stream shares its keys' slot."""
    return name.partition(GROUP_MARK)[0]


class Delivery(NamedTuple):
    id: str
    dedup: str
    payload: bytes
    deliveries: int  # how many times it has been handed out, this time included
    enqueued_at: float  # epoch seconds


class DeadEntry(NamedTuple):
    """One dead letter of a stream, as its backend keeps it."""

    id: str
    item_id: str
    payload: bytes
    deliveries: int
    reason: str
    enqueued_at: float  # epoch seconds
    first_failed_at: float
    dead_at: float


class StreamStats(NamedTuple):
    pending: int  # enqueued and not yet acknowledged (includes in-flight and delayed ones)
    oldest_age_seconds: float | None
    dead_letters: int
    delayed: int = 0  # of the pending: not due yet (a delayed save), never handed out so far


class Append(NamedTuple):
    """Add one entry to a stream (an intent's, or a task queue)."""

    stream: StreamSpec
    item_id: str  # write id and intent: names the entry in deliveries and dead letters
    payload: bytes
    # only entries a consumer sees are deduplicated (by item_id, within the dedup window); a
    # deferred task's effect is a last-write-wins write, so a duplicate costs work, not data
    dedupe: bool = True
    # a stream with several consumer groups: the entry goes to each group's stream instead of
    # ``stream`` (whose dedup marker still decides, once, whether it is added to all of them)
    copies: tuple[StreamSpec, ...] = ()
    # epoch seconds: the entry is not handed out before (a delayed save); 0: at once
    not_before: float = 0.0

    def targets(self) -> tuple[StreamSpec, ...]:
        """The streams that receive the entry."""
        return self.copies or (self.stream,)


class Put(NamedTuple):
    """Write one volatile value unless a newer one is stored or it has already expired."""

    intent: str
    key: str
    ts: int
    expires_at_us: int  # absolute: write timestamp + ttl, also for a late replay
    payload: bytes
    wid: str = ""  # the write id: breaks a tie of equal timestamps (the larger wins)


class Upsert(NamedTuple):
    """Write one acid row unless the stored row holds a newer write timestamp.

    ``gone``: a delete. ``values`` holds the key only; the backend keeps a tombstone of the key
    at ``(ts, wid)`` and removes an older row, and no write older than the tombstone lands.
    """

    table: TableSpec
    values: dict[str, Any]
    ts: int
    wid: str = ""  # the write id: breaks a tie of equal timestamps (the larger wins)
    gone: bool = False


TOMBSTONE = b""
"""The payload of a deleted volatile value or amorphous row: a write like any other, resolved
by last-write-wins, so an older save arriving later loses to it; reads see it as absent."""


class Document(NamedTuple):
    """Write one amorphous row at its write timestamp (the newest write wins)."""

    table: TableSpec
    key: tuple[Any, ...]  # partition values, then order values
    payload: bytes
    ts: int
    wid: str = ""  # the write id: breaks a tie of equal timestamps (the larger wins)


class Contribution(NamedTuple):
    """Add one save's weight to a count, in the bucket of ``at_us`` at every bucket size.

    ``contribution`` names it (the write id, or the counted object's identity): a store holds one
    version per name and bucket, the newest by ``(ts, wid)``, and its count is the sum of those
    versions' weights, however often each was written.
    """

    table: CountSpec
    key: tuple[Any, ...]
    contribution: str
    at_us: int
    ts: int
    wid: str  # the write id: of two versions with one timestamp, the larger wins
    n: int  # an int weight
    f: float  # a float weight


Op = Append | Put | Upsert | Document | Contribution
"""One write of a batch. ``Backend.write`` answers each with True (it took effect) or False
(an Append already enqueued, a Put or Upsert that lost to a newer stored value, a value that
had expired before it arrived)."""

# A count read: per (granularity, first bucket, stop) range, bucket start (µs) -> (n, f) for
# the buckets that hold anything.
CountRanges = Sequence[tuple[int, int, int]]
CountValues = list[dict[int, tuple[int, float]]]
# count_stats() of a backend that folds contributions as it writes them
NO_FOLDS: dict[str, Any] = {
    "fold_queue": 0,  # buckets waiting for their contributions to be folded
    "oldest_unfolded_s": None,  # how long the oldest of them has waited: the rollup lag
    "folds": 0,
    "folded": 0,  # contributions folded into rollups by this process
    "fold_conflicts": 0,  # folds that lost a race to another process's and were redone
    "fold_errors": 0,
}


class Pending(Protocol):
    """The result of ``write_async``: wait for it once."""

    def result(self, timeout: float) -> list[bool]: ...


class Backend(Protocol):
    """What every backend is, whatever its tier: its capabilities and its one write method.

    Capabilities are class attributes, so the store never looks at a URL to decide how to call a
    backend:

    - ``tiers``: the tiers it can serve; one instance may serve several (one Redis server holds
      both the streams and the volatile values, and then a save writes to it once).
    - ``bounded``: every call returns by the deadline it is given (socket or request timeouts,
      local files): the calling thread may run it; otherwise it runs on a thread of its own.
    - ``concurrent``: ``write_async`` sends the writes as the driver's own asynchronous requests,
      so they run while the caller writes to the other stores.

    A backend may also have ``warnings() -> list[str]``: risks in how its server is set up (a
    keyspace with one replica, a cluster master without a replica), listed by ``status()``.
    """

    tiers: ClassVar[frozenset[str]]
    bounded: ClassVar[bool]
    concurrent: ClassVar[bool]

    def write(self, ops: Sequence[Op], deadline: float | None = None) -> list[bool]: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...


class ConcurrentBackend(Backend, Protocol):
    """A backend whose ``concurrent`` is True."""

    def write_async(self, ops: Sequence[Op], deadline: float | None = None) -> Pending: ...


class TransitoryBackend(Backend, Protocol):
    def setup(self, streams: Sequence[StreamSpec]) -> None: ...
    def claim(self, stream: StreamSpec, consumer: str, count: int) -> list[Delivery]: ...
    def ack(self, stream: StreamSpec, ids: Sequence[str]) -> None: ...
    def release(self, stream: StreamSpec, delivery: Delivery, delay_seconds: float) -> None: ...
    def dead_letter(self, stream: StreamSpec, delivery: Delivery, reason: str) -> int: ...
    def dead_letters(self, stream: StreamSpec, limit: int) -> list[DeadEntry]: ...
    def redrive(self, stream: StreamSpec, ids: Sequence[str] | None, limit: int) -> int: ...
    def purge(self, stream: StreamSpec, ids: Sequence[str] | None) -> int: ...
    def stats(self, stream: StreamSpec) -> StreamStats: ...
    def remember(self, key: str, value: str, ttl_seconds: float) -> str: ...
    def advance(self, key: str, ts: int) -> int: ...


class VolatileBackend(Backend, Protocol):
    def get(self, intent: str, key: str) -> bytes | None: ...
    def get_stamped(self, intent: str, key: str) -> tuple[bytes, int] | None:
        """The payload and its write timestamp (us), or None."""
        ...

    def get_many_stamped(self, intent: str, keys: Sequence[str]) -> list[tuple[bytes, int] | None]:
        """``get_stamped`` of every key, in one round trip, aligned with ``keys``."""
        ...


class AcidTransaction(Protocol):
    def upsert(self, ops: Sequence[Upsert]) -> None: ...
    def add_outbox(self, items: Sequence[tuple[str, bytes]]) -> None: ...
    def get(
        self, spec: TableSpec, key: tuple[Any, ...], for_update: bool = False
    ) -> tuple[dict[str, Any], int] | None:
        """A row and its write timestamp, read inside the transaction; with ``for_update`` no
        other transaction reads it for update or writes it (present or not) until this one ends.
        """
        ...


class AcidBackend(Backend, Protocol):
    def setup(self, tables: Sequence[TableSpec]) -> None: ...
    def get(self, table: TableSpec, key: tuple[Any, ...]) -> dict[str, Any] | None: ...
    def get_stamped(
        self, table: TableSpec, key: tuple[Any, ...]
    ) -> tuple[dict[str, Any], int] | None: ...
    def get_many_stamped(
        self, table: TableSpec, keys: Sequence[tuple[Any, ...]]
    ) -> list[tuple[dict[str, Any], int] | None]:
        """``get_stamped`` of every key, in one round trip, aligned with ``keys``."""
        ...

    def transaction(self) -> AbstractContextManager[AcidTransaction]: ...
    def take_outbox(
        self, limit: int, older_than_seconds: float
    ) -> list[tuple[str, bytes, float]]: ...
    def find(self, table: TableSpec, fields: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` rows whose ``fields`` equal the values given, by primary key."""
        ...

    def finish_outbox(self, keys: Sequence[str]) -> None: ...


class AmorphousBackend(Backend, Protocol):
    """Documents, and counts (``Contribution`` writes): a count read costs a bounded number of
    requests per bucket, however many contributions the bucket holds."""

    def setup(self, tables: Sequence[TableSpec]) -> None: ...
    def get(self, table: TableSpec, key: tuple[Any, ...]) -> bytes | None: ...
    def get_stamped(self, table: TableSpec, key: tuple[Any, ...]) -> tuple[bytes, int] | None: ...
    def get_many_stamped(
        self, table: TableSpec, keys: Sequence[tuple[Any, ...]]
    ) -> list[tuple[bytes, int] | None]:
        """``get_stamped`` of every key (partition + order values), aligned with ``keys``."""
        ...

    def query(
        self,
        table: TableSpec,
        partition: tuple[Any, ...],
        limit: int,
        *,
        since: Any = None,
        until: Any = None,
        oldest_first: bool = False,
    ) -> list[bytes]:
        """Up to ``limit`` payloads of one partition, newest first by the order columns (or
        oldest first); ``since`` (included) and ``until`` (excluded) bound the first one."""
        ...

    def page(
        self, table: TableSpec, partition: tuple[Any, ...], size: int, after: str | None
    ) -> tuple[list[bytes], str | None]:
        """Up to ``size`` payloads of one partition, newest first, resuming after the page whose
        cursor ``after`` is; and this page's cursor (None: nothing follows it). A cursor is the
        backend's own text (paging state, keyset values): bad text raises ValueError."""
        ...

    def setup_counts(self, counts: Sequence[CountSpec]) -> None: ...
    def read_counts(
        self, count: CountSpec, key: tuple[Any, ...], ranges: CountRanges
    ) -> CountValues: ...
    def count_stats(self) -> dict[str, Any]:
        """Folding work (queued partitions, folds, conflicts): zeros where counts fold at write."""
        ...


def bucket_of(at_us: int, granularity: int) -> int:
    """The start (µs since the epoch) of the ``granularity``-second bucket holding ``at_us``:
    buckets are aligned to the epoch, in UTC."""
    return at_us - at_us % (granularity * 1_000_000)


# Connections and clients a forked child inherited: kept referenced for the child's lifetime and
# never closed there (closing would end the parent's session on the shared socket), so no
# finalizer touches them either.
INHERITED: list[object] = []


def refuse(backend: object, op: object) -> TypeError:
    """The error for an op a backend does not take: the router sends each op to its tier."""
    return TypeError(f"{type(backend).__name__} does not take {type(op).__name__} writes")


def key_text(values: Sequence[Any]) -> str:
    """A readable, unambiguous text form of key values, for Redis key names and maps.

    Each value is percent-escaped so ``:`` and the hash-tag braces can only be separators.
    """
    return ":".join(_escaped(v) for v in values)


def _escaped(value: Any) -> str:
    if type(value) is int or isinstance(value, UUID):
        return str(value)  # digits, '-' and hex: nothing to escape
    return quote(_scalar_text(value), safe="")


def _scalar_text(value: Any) -> str:
    if isinstance(value, Decimal):
        # equal numbers, one key: 1.0 and 1.00 are one row in SQL and Cassandra, so one here
        if not value.is_finite():
            return str(value)
        return "0" if value == 0 else format(value.normalize(), "f")
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
