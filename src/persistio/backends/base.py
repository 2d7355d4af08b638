"""The per-tier backend contracts: a handful of methods each.

Backends receive plain values (``Column`` specs, rows, msgpack payloads and microsecond write
timestamps) and never model types. Each one resolves writes by write timestamp (last write wins),
so a replayed or redelivered write can never overwrite newer data, and raises
``BackendUnavailable`` when its server cannot be reached (any other failure is a bug or bad data).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, NamedTuple, Protocol
from urllib.parse import quote
from uuid import UUID

from ..codec import Column


@dataclass(frozen=True)
class TableSpec:
    """An acid or amorphous table: typed columns, key columns, clustering order, TTL."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # acid: the primary key; amorphous: the partition key
    order: tuple[str, ...] = ()  # amorphous clustering columns, queried newest first
    ttl_seconds: int | None = None
    consistency: str | None = None


@dataclass(frozen=True)
class StreamSpec:
    """A transitory stream (an intent's, or a task queue) and its delivery rules."""

    name: str
    max_deliveries: int = 5
    visibility_seconds: float = 30.0
    max_age_seconds: float | None = None
    retry_backoff_seconds: float = 0.2  # first retry delay; doubles per delivery


class QueueItem(NamedTuple):
    dedup: str  # enqueue is deduplicated by this (the write id, per stream)
    payload: bytes


class Delivery(NamedTuple):
    id: str
    dedup: str
    payload: bytes
    deliveries: int  # how many times it has been handed out, this time included
    enqueued_at: float  # epoch seconds


class StreamStats(NamedTuple):
    pending: int  # enqueued and not yet acknowledged (includes in-flight ones)
    oldest_age_seconds: float | None
    dead_letters: int


class VolatileEntry(NamedTuple):
    key: str
    ts: int
    expires_at_us: int  # absolute: write timestamp + ttl, also for a late replay
    payload: bytes


class AcidRow(NamedTuple):
    values: dict[str, Any]
    ts: int


class AmorphousRow(NamedTuple):
    key: tuple[Any, ...]  # partition values, then order values
    payload: bytes
    ts: int


class TransitoryBackend(Protocol):
    def setup(self, streams: Sequence[StreamSpec]) -> None: ...
    def enqueue(self, stream: StreamSpec, items: Sequence[QueueItem]) -> int: ...
    def claim(self, stream: StreamSpec, consumer: str, count: int) -> list[Delivery]: ...
    def ack(self, stream: StreamSpec, ids: Sequence[str]) -> None: ...
    def release(self, stream: StreamSpec, delivery: Delivery, delay_seconds: float) -> None: ...
    def dead_letter(self, stream: StreamSpec, delivery: Delivery, reason: str) -> None: ...
    def stats(self, stream: StreamSpec) -> StreamStats: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...


class VolatileBackend(Protocol):
    def put(self, intent: str, entries: Sequence[VolatileEntry]) -> None: ...
    def get(self, intent: str, key: str) -> bytes | None: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...


class AcidTransaction(Protocol):
    def upsert(self, table: TableSpec, rows: Sequence[AcidRow]) -> None: ...
    def add_outbox(self, items: Sequence[tuple[str, bytes]]) -> None: ...


class AcidBackend(Protocol):
    def setup(self, tables: Sequence[TableSpec]) -> None: ...
    def upsert(self, table: TableSpec, rows: Sequence[AcidRow]) -> None: ...
    def get(self, table: TableSpec, key: tuple[Any, ...]) -> dict[str, Any] | None: ...
    def transaction(self) -> AbstractContextManager[AcidTransaction]: ...
    def take_outbox(self, limit: int, older_than_seconds: float) -> list[tuple[str, bytes]]: ...
    def finish_outbox(self, keys: Sequence[str]) -> None: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...


class AmorphousBackend(Protocol):
    def setup(self, tables: Sequence[TableSpec]) -> None: ...
    def write(self, table: TableSpec, rows: Sequence[AmorphousRow]) -> None: ...
    def get(self, table: TableSpec, key: tuple[Any, ...]) -> bytes | None: ...
    def query(self, table: TableSpec, partition: tuple[Any, ...], limit: int) -> list[bytes]: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...


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
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
