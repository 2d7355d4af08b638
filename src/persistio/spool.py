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

    def __init__(self, path: Path, *, max_items: int = 1_000_000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_items = max_items
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
        """Append (tier, encoded task) pairs; refuse rather than lose when the spool is full."""
        now = time.time()
        with self._write() as cur:
            (depth,) = cur.execute("SELECT count(*) FROM spooled").fetchone()
            if depth + len(items) > self.max_items:
                raise BackendUnavailable(
                    f"the spool {self.path} is full ({depth} of {self.max_items} items) and "
                    "a backend is down: raise max_items or restore the backend"
                )
            cur.executemany(
                "INSERT INTO spooled (tier, task, spooled_at) VALUES (?, ?, ?)",
                [(tier, task, now) for tier, task in items],
            )
            _bump(cur, "buffered", len(items))

    def peek(self, tier: str, limit: int) -> list[tuple[int, bytes]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, task FROM spooled WHERE tier = ? ORDER BY seq LIMIT ?", (tier, limit)
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def remove(self, seqs: Sequence[int]) -> None:
        with self._write() as cur:
            cur.executemany("DELETE FROM spooled WHERE seq = ?", [(s,) for s in seqs])
            _bump(cur, "replayed", len(seqs))

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
