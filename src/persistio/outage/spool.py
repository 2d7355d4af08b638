"""The local spool: tasks whose backend was down, kept in an fsync'd SQLite WAL file.

Also the durable home of the counters ``status()`` reports (drops, buffers, replays, retries), so
that ``persistio status`` in another process sees what the workers counted. Counters are kept in
memory and written to the file by the replay thread about once a second (and on close), never
through an fsync on a caller's thread; the spool's depth and size are kept in one row updated in
the same transaction as each change, so adding an item never counts the table.

A spooled task that its store keeps refusing for a reason other than an outage (bad data, a model
this process does not know) is retried a bounded number of times, then set aside in the spool's
dead letters with its reason: one poison task never blocks the tasks behind it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from persistio.errors import BackendUnavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS spooled (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tier TEXT NOT NULL,
    task BLOB NOT NULL,
    spooled_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS spooled_by_tier ON spooled (tier);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS spool_size (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    items INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS clock (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    high INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead (
    seq INTEGER PRIMARY KEY,
    tier TEXT NOT NULL,
    task BLOB NOT NULL,
    spooled_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    reason TEXT NOT NULL,
    dead_at REAL NOT NULL
);
"""
# columns added to a spool file made by an earlier version
MIGRATIONS = (
    ("spooled", "attempts", "INTEGER NOT NULL DEFAULT 0"),
    ("spooled", "last_error", "TEXT"),
)


class Spooled(NamedTuple):
    seq: int
    task: bytes
    attempts: int  # failed replays so far (outages not counted)
    spooled_at: float


class DeadTask(NamedTuple):
    seq: int
    tier: str
    task: bytes
    attempts: int
    reason: str
    spooled_at: float
    dead_at: float


class Spool:
    """A bounded, durable FIFO per tier, its dead letters, and named counters."""

    def __init__(
        self,
        path: Path,
        *,
        max_items: int = 1_000_000,
        max_bytes: int = 1 << 30,
        full_timeout: float = 5.0,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.full_timeout = full_timeout  # how long add() waits for room before it refuses
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}  # counter increments not yet in the file
        self._pending_lock = threading.Lock()
        self._open()

    def _open(self) -> None:
        self._pid = os.getpid()
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a buffered write is acknowledged: fsync it
        self._db.executescript(SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(spooled)")}
        for table, column, ddl in MIGRATIONS:
            if column not in columns:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}")
        with self._write() as cur:
            if cur.execute("SELECT 1 FROM spool_size").fetchone() is None:
                items, size = cur.execute(
                    "SELECT count(*), coalesce(sum(length(task)), 0) FROM spooled"
                ).fetchone()
                cur.execute("INSERT INTO spool_size VALUES (1, ?, ?)", (items, size))

    def after_fork(self) -> None:
        """In a child process: a connection of its own (SQLite's must never cross a fork)."""
        if self._pid != os.getpid():
            self._lock = threading.Lock()
            self._pending_lock = threading.Lock()
            self._pending = {}
            self._open()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def add(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Append (tier, encoded task) pairs.

        When the spool is full this waits up to ``full_timeout`` for a replay to make room, then
        raises BackendUnavailable: a save is refused, never silently lost.
        """
        size = sum(len(task) for _, task in items)
        deadline = time.monotonic() + self.full_timeout
        while True:
            now = time.time()
            with self._write() as cur:
                depth, used = cur.execute("SELECT items, bytes FROM spool_size").fetchone()
                if depth + len(items) <= self.max_items and used + size <= self.max_bytes:
                    cur.executemany(
                        "INSERT INTO spooled (tier, task, spooled_at) VALUES (?, ?, ?)",
                        [(tier, task, now) for tier, task in items],
                    )
                    cur.execute(
                        "UPDATE spool_size SET items = items + ?, bytes = bytes + ?",
                        (len(items), size),
                    )
                    _bump(cur, "buffered", len(items))
                    return
            if time.monotonic() >= deadline:
                self.bump("spool_full_refusals", len(items))
                raise BackendUnavailable(
                    f"the spool {self.path} is full ({depth} items, {used} bytes; limits "
                    f"{self.max_items} items, {self.max_bytes} bytes) while a backend is down: "
                    "raise spool_max_items/spool_max_bytes or restore the backend"
                )
            time.sleep(0.05)

    def peek(self, tier: str, limit: int) -> list[Spooled]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, task, attempts, spooled_at FROM spooled WHERE tier = ? "
                "ORDER BY seq LIMIT ?",
                (tier, limit),
            ).fetchall()
        return [Spooled(*r) for r in rows]

    def remove(self, seqs: Sequence[int]) -> None:
        """Replayed: gone from the spool."""
        with self._write() as cur:
            removed = self._delete(cur, seqs)
            _bump(cur, "replayed", removed)

    def _delete(self, cur: sqlite3.Cursor, seqs: Sequence[int]) -> int:
        removed = 0
        size = 0
        for seq in seqs:
            row = cur.execute("DELETE FROM spooled WHERE seq = ? RETURNING length(task)", (seq,))
            found = row.fetchone()
            if found is not None:  # another process may have replayed it first
                removed += 1
                size += found[0]
        cur.execute("UPDATE spool_size SET items = items - ?, bytes = bytes - ?", (removed, size))
        return removed

    def failed(self, seq: int, reason: str, max_attempts: int) -> bool:
        """A replay of ``seq`` was refused for ``reason`` (not an outage); True when that was
        its last attempt and it moved to the dead letters."""
        now = time.time()
        with self._write() as cur:
            row = cur.execute(
                "UPDATE spooled SET attempts = attempts + 1, last_error = ? WHERE seq = ? "
                "RETURNING attempts, tier, task, spooled_at",
                (reason[:1000], seq),
            ).fetchone()
            if row is None or row[0] < max_attempts:
                return False
            attempts, tier, task, spooled_at = row
            cur.execute(
                "INSERT OR REPLACE INTO dead VALUES (?, ?, ?, ?, ?, ?, ?)",
                (seq, tier, task, spooled_at, attempts, reason[:1000], now),
            )
            self._delete(cur, [seq])
            _bump(cur, "dead_letters:spool")
            return True

    def dead(self, limit: int = 100) -> list[DeadTask]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, tier, task, attempts, reason, spooled_at, dead_at FROM dead "
                "ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [DeadTask(*r) for r in rows]

    def redrive(self, seqs: Sequence[int] | None = None) -> int:
        """Put dead tasks back in the spool (all of them, or ``seqs``); how many."""
        with self._write() as cur:
            where, args = _which(seqs)
            rows = cur.execute(f"DELETE FROM dead {where} RETURNING tier, task", args).fetchall()
            now = time.time()
            cur.executemany(
                "INSERT INTO spooled (tier, task, spooled_at) VALUES (?, ?, ?)",
                [(tier, task, now) for tier, task in rows],
            )
            cur.execute(
                "UPDATE spool_size SET items = items + ?, bytes = bytes + ?",
                (len(rows), sum(len(t) for _, t in rows)),
            )
            return len(rows)

    def purge(self, seqs: Sequence[int] | None = None) -> int:
        """Delete dead tasks for good (all of them, or ``seqs``); how many (counted)."""
        with self._write() as cur:
            where, args = _which(seqs)
            n = cur.execute(f"DELETE FROM dead {where}", args).rowcount
            _bump(cur, "purged:spool", n)
            return n

    def dead_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM dead").fetchone()[0])

    def depth(self) -> dict[str, tuple[int, float | None]]:
        """Per tier: items spooled, and the age in seconds of the oldest."""
        with self._lock:
            if self._db.execute("SELECT items FROM spool_size").fetchone()[0] == 0:
                return {}  # the common case, without touching the table
            rows = self._db.execute(
                "SELECT tier, count(*), min(spooled_at) FROM spooled GROUP BY tier"
            ).fetchall()
        now = time.time()
        return {tier: (n, None if t is None else max(0.0, now - t)) for tier, n, t in rows}

    def size(self) -> tuple[int, int]:
        """(items, bytes) spooled: one row, kept up to date with every change."""
        with self._lock:
            items, used = self._db.execute("SELECT items, bytes FROM spool_size").fetchone()
        return int(items), int(used)

    def bump(self, name: str, by: int = 1) -> None:
        """Count in memory; ``flush_counters`` writes the counts to the file."""
        with self._pending_lock:
            self._pending[name] = self._pending.get(name, 0) + by

    def flush_counters(self) -> None:
        if not self._pending:
            return
        pending: dict[str, int] = {}
        try:
            # the counts leave memory inside the write, under the file's lock, so counters()
            # (which reads the file under that lock) sees them in one place or the other
            with self._write() as cur:
                with self._pending_lock:
                    pending, self._pending = self._pending, {}
                for name, by in pending.items():
                    _bump(cur, name, by)
        except BaseException:
            with self._pending_lock:  # not lost: added back for the next flush
                for name, by in pending.items():
                    self._pending[name] = self._pending.get(name, 0) + by
            raise

    def counters(self) -> dict[str, int]:
        with self._lock:
            stored = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
            with self._pending_lock:
                for name, by in self._pending.items():
                    stored[name] = stored.get(name, 0) + by
        return stored

    def clock_high(self) -> int:
        """The largest write timestamp a process using this spool has kept (0 if none)."""
        with self._lock:
            row = self._db.execute("SELECT high FROM clock").fetchone()
        return 0 if row is None else int(row[0])

    def keep_clock(self, high: int) -> None:
        """Keep the write clock's high-water mark, so a restart never stamps below it."""
        with self._write() as cur:
            cur.execute(
                "INSERT INTO clock VALUES (1, ?) ON CONFLICT (one) DO UPDATE "
                "SET high = max(high, excluded.high)",
                (high,),
            )

    def close(self) -> None:
        self.flush_counters()
        with self._lock:
            self._db.close()


def _which(seqs: Sequence[int] | None) -> tuple[str, list[int]]:
    if seqs is None:
        return "", []
    if not seqs:
        return "WHERE 0", []
    return f"WHERE seq IN ({', '.join('?' * len(seqs))})", list(seqs)


def _bump(cur: sqlite3.Cursor, name: str, by: int = 1) -> None:
    cur.execute(
        "INSERT INTO counters (name, value) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        (name, by),
    )
