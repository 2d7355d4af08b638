"""The local spool: tasks whose backend was down, kept in an fsync'd SQLite WAL file.

Also the durable home of the counters ``status()`` reports (drops, buffers, replays, retries), so
that ``persistio status`` in another process sees what the workers counted.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .errors import BackendUnavailable

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
"""


class Spool:
    """A bounded, durable FIFO per tier, plus named counters."""

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
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a buffered write is acknowledged: fsync it
        self._db.executescript(SCHEMA)

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
                depth, used = cur.execute(
                    "SELECT count(*), coalesce(sum(length(task)), 0) FROM spooled"
                ).fetchone()
                fits = depth + len(items) <= self.max_items and used + size <= self.max_bytes
                if fits:
                    cur.executemany(
                        "INSERT INTO spooled (tier, task, spooled_at) VALUES (?, ?, ?)",
                        [(tier, task, now) for tier, task in items],
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

    def peek(self, tier: str, limit: int) -> list[tuple[int, bytes]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, task FROM spooled WHERE tier = ? ORDER BY seq LIMIT ?", (tier, limit)
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def remove(self, seqs: Sequence[int]) -> None:
        with self._write() as cur:
            removed = 0
            for seq in seqs:
                cur.execute("DELETE FROM spooled WHERE seq = ?", (seq,))
                removed += cur.rowcount  # another process may have replayed it first
            _bump(cur, "replayed", removed)

    def depth(self) -> dict[str, tuple[int, float | None]]:
        """Per tier: items spooled, and the age in seconds of the oldest."""
        with self._lock:
            rows = self._db.execute(
                "SELECT tier, count(*), min(spooled_at) FROM spooled GROUP BY tier"
            ).fetchall()
        now = time.time()
        return {tier: (n, None if t is None else max(0.0, now - t)) for tier, n, t in rows}

    def bump(self, name: str, by: int = 1) -> None:
        with self._write() as cur:
            _bump(cur, name, by)

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT name, value FROM counters").fetchall())

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _bump(cur: sqlite3.Cursor, name: str, by: int) -> None:
    cur.execute(
        "INSERT INTO counters (name, value) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        (name, by),
    )
