"""Cassandra writes in flight: small unlogged batches per replica, a bounded window of requests.

The Python driver spends far more CPU per request (building, framing and answering it) than per
row, so rows that go to the same replica travel together in an UNLOGGED BATCH: one request for
many rows. Unlogged: no batch log, so it is not atomic across partitions, which nothing here
needs (each row is an idempotent insert at its own write timestamp). Grouping by replica keeps
each batch on the node that owns its rows (token-aware, as single inserts are), and batches stay
under Cassandra's default ``batch_size_warn_threshold`` (5 KiB) and
``unlogged_batch_across_partitions_warn_threshold`` (10 partitions), so the server never warns
about them. Past those limits every batch came back with a warning that the driver logged, and
smaller batches also run faster: more of them are in flight at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from cassandra.query import BatchStatement, BatchType

from persistio.errors import InDoubt

IN_FLIGHT = 96  # concurrent requests per write: keeps the node busy, bounds memory
BATCH_BYTES = 4000  # estimated bytes per batch: under the 5 KiB warning threshold
BATCH_ROWS = 64
# partitions per batch: at most Cassandra's default unlogged_batch_across_partitions_warn_threshold
# (10), above which the server sends a warning with every batch (the driver logs each one)
BATCH_PARTITIONS = 10
ROW_OVERHEAD = 64  # key columns, timestamp, TTL and framing, per row (an estimate)
TIER = "amorphous"


def batched(bound: Sequence[tuple[Any, int]], metadata: Any, keyspace: str) -> list[Any]:
    """The statements to send: single inserts, or unlogged batches of rows for one replica.

    ``bound`` holds (bound statement, payload size) pairs.
    """
    if len(bound) < 2:
        return [b for b, _ in bound]
    groups: dict[tuple[Any, Any], list[tuple[Any, int]]] = {}
    for stmt, size in bound:
        replicas = metadata.get_replicas(keyspace, stmt.routing_key) if stmt.routing_key else []
        owner = replicas[0] if replicas else None
        groups.setdefault((owner, stmt.consistency_level), []).append((stmt, size))
    out: list[Any] = []
    for (_, level), rows in groups.items():
        chunk: list[Any] = []
        keys: set[Any] = set()
        used = 0
        for stmt, size in rows:
            cost = size + ROW_OVERHEAD
            new_key = stmt.routing_key not in keys
            if chunk and (
                used + cost > BATCH_BYTES
                or len(chunk) >= BATCH_ROWS
                or (new_key and len(keys) >= BATCH_PARTITIONS)
            ):
                out.append(_statement(chunk, level))
                chunk, keys, used = [], set(), 0
            chunk.append(stmt)
            keys.add(stmt.routing_key)
            used += cost
        if chunk:
            out.append(_statement(chunk, level))
    return out


def _statement(rows: list[Any], level: Any) -> Any:
    """One row as its own statement; several as one unlogged batch."""
    if len(rows) == 1:
        return rows[0]
    batch = BatchStatement(batch_type=BatchType.UNLOGGED, consistency_level=level)
    for stmt in rows:
        batch.add(stmt)
    batch.is_idempotent = True  # every row is written at its own timestamp
    return batch


class Requests:
    """Inserts in flight; ``result`` waits for all of them (the first failure is raised)."""

    def __init__(
        self,
        mapped: Callable[[str], AbstractContextManager[None]],
        session: Any,
        statements: list[Any],
        ops: int,
        timeout: float,
        where: str,
        on_success: Callable[[], None] | None = None,
    ) -> None:
        self._mapped = mapped
        self._on_success = on_success  # run once, when every statement has succeeded
        self._session = session
        self._statements = statements
        self._ops = ops
        self._timeout = timeout
        self._where = where
        self._lock = threading.Lock()
        self._next = 0
        self._done = 0
        self._error: BaseException | None = None
        self._finished = threading.Event()
        if not statements:
            self._done_ok()
        for _ in range(min(IN_FLIGHT, len(statements))):
            self._send()

    def _send(self) -> None:
        with self._lock:
            if self._next >= len(self._statements) or self._error is not None:
                return
            stmt = self._statements[self._next]
            self._next += 1
        try:
            future = self._session.execute_async(stmt, timeout=self._timeout)
        except Exception as exc:
            self._failed(exc)
            return
        future.add_callbacks(self._succeeded, self._failed)

    def _succeeded(self, _rows: Any) -> None:
        with self._lock:
            self._done += 1
            finished = self._done == len(self._statements)
        if finished:
            self._done_ok()
        else:
            self._send()

    def _done_ok(self) -> None:
        if self._on_success is not None:
            self._on_success()
        self._finished.set()

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = exc
        self._finished.set()

    def result(self, timeout: float) -> list[bool]:
        if not self._finished.wait(timeout):
            raise InDoubt(
                f"{TIER} backend {self._where}: no answer within {timeout:.2f}s (it may have "
                "been written)",
                tier=TIER,
            )
        if self._error is not None:
            with self._mapped(self._where):
                raise self._error
        return [True] * self._ops
