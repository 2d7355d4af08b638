"""Transitory tier, embedded: a durable SQLite queue with consumer ack, redelivery, dead letters.

The same semantics as Redis Streams with a consumer group: a claimed item is invisible for the
stream's visibility timeout, then handed out again; an acknowledged item is deleted (expunged);
an entry a consumer sees is deduplicated by item id within a window (task queue entries are not:
their effects are last-write-wins writes); items past ``max_age`` are dead-lettered.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

from persistio.backends.base import (
    INHERITED,
    Append,
    DeadEntry,
    Delivery,
    Op,
    StreamSpec,
    StreamStats,
    refuse,
)
from persistio.errors import BackendUnavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    dedup TEXT NOT NULL,
    payload BLOB NOT NULL,
    enqueued_at REAL NOT NULL,
    visible_at REAL NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 0,
    first_failed_at REAL
);
-- (stream, rowid) order: a claim walks the oldest items first and stops at its LIMIT
CREATE INDEX IF NOT EXISTS items_by_stream ON items (stream);
CREATE TABLE IF NOT EXISTS seen (
    stream TEXT NOT NULL, dedup TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (stream, dedup)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_by_age ON seen (at);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    dedup TEXT NOT NULL,
    payload BLOB NOT NULL,
    deliveries INTEGER NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL,
    enqueued_at REAL,
    first_failed_at REAL
);
CREATE INDEX IF NOT EXISTS dead_letters_by_stream ON dead_letters (stream);
CREATE TABLE IF NOT EXISTS clocks (key TEXT PRIMARY KEY, high INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS remembered (
    key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL NOT NULL
) WITHOUT ROWID;
"""


TRIM_EVERY = 1000  # appends between purges of old dedup markers and trims of long streams


class SQLiteQueue:
    """One SQLite file holds every stream; safe across threads and across processes."""

    tiers: ClassVar[frozenset[str]] = frozenset({"transitory"})
    bounded: ClassVar[bool] = True  # a local file: SQLite's busy timeout bounds a wait
    concurrent: ClassVar[bool] = False

    def __init__(self, path: Path, *, dedup_window_seconds: float = 86_400.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.dedup_window_seconds = dedup_window_seconds
        self._lock = threading.Lock()
        self._open()
        self._enqueues_since_purge = 0
        self.trimmed: dict[str, int] = {}  # entries trimmed per stream (this process's count)

    def after_fork(self) -> None:
        """In a child process: a connection of its own (SQLite's must never cross a fork)."""
        INHERITED.append(self._db)
        self._lock = threading.Lock()
        self._open()

    def _open(self) -> None:
        path = self.path
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE takes the write lock
        # up front, so two processes claiming never both read the same items).
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives an application crash; FULL would fsync every enqueue.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        for table, column in (
            ("items", "first_failed_at"),
            ("dead_letters", "enqueued_at"),
            ("dead_letters", "first_failed_at"),
        ):  # files made by an earlier version
            if column not in {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} REAL")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cur = self._db.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                yield cur
                cur.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self._rollback(cur)
                raise BackendUnavailable(f"transitory queue {self.path}: {exc}") from exc
            except BaseException:
                self._rollback(cur)
                raise

    @staticmethod
    def _rollback(cur: sqlite3.Cursor) -> None:
        if cur.connection.in_transaction:
            cur.execute("ROLLBACK")

    def setup(self, streams: Sequence[StreamSpec]) -> None:
        return None  # one schema serves every stream

    def write(self, ops: Sequence[Op], deadline: float | None = None) -> list[bool]:
        """Append the entries in one transaction; True for each one added."""
        now = time.time()
        added: list[bool] = []
        with self._write() as cur:
            for op in ops:
                if type(op) is not Append:
                    raise refuse(self, op)
                if op.dedupe:
                    cur.execute(
                        "INSERT OR IGNORE INTO seen (stream, dedup, at) VALUES (?, ?, ?)",
                        (op.stream.name, op.item_id, now),
                    )
                    if not cur.rowcount:
                        added.append(False)
                        continue
                cur.executemany(
                    "INSERT INTO items (stream, dedup, payload, enqueued_at, visible_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [
                        (s.name, op.item_id, op.payload, now, max(now, op.not_before))
                        for s in op.targets()
                    ],
                )
                added.append(True)
            self._enqueues_since_purge += len(ops)
            if self._enqueues_since_purge > TRIM_EVERY:
                self._enqueues_since_purge = 0
                cur.execute("DELETE FROM seen WHERE at < ?", (now - self.dedup_window_seconds,))
                self._trim(cur, ops, now)
        return added

    def _trim(self, cur: sqlite3.Cursor, ops: Sequence[Op], now: float) -> None:
        """Keep each stream within its max_len / max_age (checked every TRIM_EVERY appends)."""
        targets = {s.name: s for op in ops if type(op) is Append for s in op.targets()}
        for spec in targets.values():
            n = 0
            if spec.max_age_seconds is not None:
                n += cur.execute(
                    "DELETE FROM items WHERE stream = ? AND enqueued_at < ?",
                    (spec.name, now - spec.max_age_seconds),
                ).rowcount
            if spec.max_len is not None:
                n += cur.execute(
                    "DELETE FROM items WHERE stream = ? AND id <= (SELECT id FROM items"
                    " WHERE stream = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (spec.name, spec.name, spec.max_len),
                ).rowcount
            if n:
                self.trimmed[spec.name] = self.trimmed.get(spec.name, 0) + n

    def remember(self, key: str, value: str, ttl_seconds: float) -> str:
        """Store ``value`` under ``key`` unless a live one is there; the value there now."""
        now = time.time()
        with self._write() as cur:
            cur.execute("DELETE FROM remembered WHERE key = ? AND expires_at <= ?", (key, now))
            cur.execute(
                "INSERT OR IGNORE INTO remembered VALUES (?, ?, ?)", (key, value, now + ttl_seconds)
            )
            (stored,) = cur.execute("SELECT value FROM remembered WHERE key = ?", (key,)).fetchone()
        return str(stored)

    def advance(self, key: str, ts: int) -> int:
        """Raise the shared clock ``key`` to ``ts`` if it is below; the shared clock now."""
        with self._write() as cur:
            cur.execute(
                "INSERT INTO clocks VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                "SET high = max(high, excluded.high)",
                (key, ts),
            )
            (high,) = cur.execute("SELECT high FROM clocks WHERE key = ?", (key,)).fetchone()
        return int(high)

    def claim(self, stream: StreamSpec, consumer: str, count: int) -> list[Delivery]:
        now = time.time()
        with self._write() as cur:
            if stream.max_age_seconds is not None:
                self._expire(cur, stream, now - stream.max_age_seconds, now)
            rows = cur.execute(
                "SELECT id, dedup, payload, deliveries, enqueued_at FROM items"
                " WHERE stream = ? AND visible_at <= ? ORDER BY id LIMIT ?",
                (stream.name, now, count),
            ).fetchall()
            if not rows:
                return []
            cur.executemany(
                "UPDATE items SET visible_at = ?, deliveries = deliveries + 1 WHERE id = ?",
                [(now + stream.visibility_seconds, r[0]) for r in rows],
            )
        return [Delivery(str(r[0]), r[1], r[2], r[3] + 1, r[4]) for r in rows]

    def _expire(self, cur: sqlite3.Cursor, stream: StreamSpec, before: float, now: float) -> None:
        cur.execute(
            "INSERT INTO dead_letters (stream, dedup, payload, deliveries, reason, at)"
            " SELECT stream, dedup, payload, deliveries, 'expired: older than max_age', ?"
            " FROM items WHERE stream = ? AND enqueued_at < ?",
            (now, stream.name, before),
        )
        cur.execute("DELETE FROM items WHERE stream = ? AND enqueued_at < ?", (stream.name, before))

    def ack(self, stream: StreamSpec, ids: Sequence[str]) -> None:
        with self._write() as cur:
            cur.executemany(
                "DELETE FROM items WHERE id = ? AND stream = ?",
                [(int(i), stream.name) for i in ids],
            )

    def release(self, stream: StreamSpec, delivery: Delivery, delay_seconds: float) -> None:
        with self._write() as cur:
            now = time.time()
            cur.execute(
                "UPDATE items SET visible_at = ?, first_failed_at = coalesce(first_failed_at, ?)"
                " WHERE id = ? AND stream = ?",
                (now + delay_seconds, now, int(delivery.id), stream.name),
            )

    def dead_letter(self, stream: StreamSpec, delivery: Delivery, reason: str) -> int:
        """Move the item to the dead letters; how many old ones went to keep them bounded."""
        now = time.time()
        with self._write() as cur:
            row = cur.execute(
                "DELETE FROM items WHERE id = ? AND stream = ? RETURNING first_failed_at",
                (int(delivery.id), stream.name),
            ).fetchone()
            first = row[0] if row is not None and row[0] is not None else now
            cur.execute(
                "INSERT INTO dead_letters (stream, dedup, payload, deliveries, reason, at,"
                " enqueued_at, first_failed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    stream.name,
                    delivery.dedup,
                    delivery.payload,
                    delivery.deliveries,
                    reason,
                    now,
                    delivery.enqueued_at,
                    first,
                ),
            )
            return self._bound_dead(cur, stream, now)

    def _bound_dead(self, cur: sqlite3.Cursor, stream: StreamSpec, now: float) -> int:
        dropped = cur.execute(
            "DELETE FROM dead_letters WHERE stream = ? AND (at < ? OR id <= ("
            " SELECT id FROM dead_letters WHERE stream = ? ORDER BY id DESC LIMIT 1 OFFSET ?))",
            (stream.name, now - stream.dead_max_age_seconds, stream.name, stream.dead_max),
        ).rowcount
        return int(dropped)

    def dead_letters(self, stream: StreamSpec, limit: int) -> list[DeadEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, dedup, payload, deliveries, reason, at, enqueued_at, first_failed_at"
                " FROM dead_letters WHERE stream = ? ORDER BY id LIMIT ?",
                (stream.name, limit),
            ).fetchall()
        return [
            DeadEntry(
                str(i), d, p, n, r, e if e is not None else at, f if f is not None else at, at
            )
            for i, d, p, n, r, at, e, f in rows
        ]

    def redrive(self, stream: StreamSpec, ids: Sequence[str] | None, limit: int) -> int:
        now = time.time()
        with self._write() as cur:
            if ids is None:
                rows = cur.execute(
                    "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters"
                    " WHERE stream = ? ORDER BY id LIMIT ?) RETURNING dedup, payload",
                    (stream.name, limit),
                ).fetchall()
            else:
                rows = [
                    r
                    for i in ids
                    for r in cur.execute(
                        "DELETE FROM dead_letters WHERE id = ? AND stream = ?"
                        " RETURNING dedup, payload",
                        (int(i), stream.name),
                    ).fetchall()
                ]
            cur.executemany(
                "INSERT INTO items (stream, dedup, payload, enqueued_at, visible_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [(stream.name, d, p, now, now) for d, p in rows],
            )
        return len(rows)

    def purge(self, stream: StreamSpec, ids: Sequence[str] | None) -> int:
        with self._write() as cur:
            if ids is None:
                return int(
                    cur.execute(
                        "DELETE FROM dead_letters WHERE stream = ?", (stream.name,)
                    ).rowcount
                )
            return sum(
                cur.execute(
                    "DELETE FROM dead_letters WHERE id = ? AND stream = ?", (int(i), stream.name)
                ).rowcount
                for i in ids
            )

    def stats(self, stream: StreamSpec) -> StreamStats:
        now = time.time()
        with self._lock:
            pending, oldest, delayed = self._db.execute(
                "SELECT count(*), min(enqueued_at),"
                " coalesce(sum(deliveries = 0 AND visible_at > ?), 0)"
                " FROM items WHERE stream = ?",
                (now, stream.name),
            ).fetchone()
            (dead,) = self._db.execute(
                "SELECT count(*) FROM dead_letters WHERE stream = ?", (stream.name,)
            ).fetchone()
        age = None if oldest is None else max(0.0, now - oldest)
        return StreamStats(pending, age, dead, delayed)

    def ping(self) -> None:
        with self._lock:
            self._db.execute("SELECT 1").fetchone()

    def close(self) -> None:
        with self._lock:
            self._db.close()
