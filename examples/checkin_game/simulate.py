"""The load generator: load a world, stream its check-ins through the game, drain, measure.

One process plays both sides, as a small deployment would: the main thread acknowledges saves
(the REALTIME intents are written before ``save_many`` returns) while worker threads run the
deferred tasks and both consumers. Lag is sampled from ``store.status()`` while it runs.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from .game import Game
from .models import Checkin
from .world import World

SAMPLE_EVERY_S = 0.5  # status() pings every backend: sample it, do not poll it


@dataclass
class Lag:
    """The worst backlog seen for one queue or stream while check-ins were being saved."""

    max_pending: int = 0
    max_oldest_s: float = 0.0

    def see(self, pending: int, oldest: float | None) -> None:
        self.max_pending = max(self.max_pending, pending)
        self.max_oldest_s = max(self.max_oldest_s, oldest or 0.0)


@dataclass
class RunStats:
    checkins: int = 0
    setup_s: float = 0.0
    save_s: float = 0.0
    drain_s: float = 0.0
    batch_latencies_s: list[float] = field(default_factory=list)
    lag: dict[str, Lag] = field(default_factory=dict)
    pending_now: dict[str, int] = field(default_factory=dict)  # at the last sample
    status: dict[str, Any] = field(default_factory=dict)
    span: tuple[datetime, datetime] | None = None  # the first and last check-in's time

    def sample(self, status: dict[str, Any]) -> int:
        """Record one ``status()``; return how many tasks and deliveries are pending."""
        places = {
            **{f"queue {k}": v for k, v in status["queues"].items()},
            **{f"stream {k}": v for k, v in status["streams"].items() if k.startswith("game_")},
        }
        for name, stats in places.items():
            if "pending" in stats:  # a stream whose stats failed reports only "error"
                self.lag.setdefault(name, Lag()).see(stats["pending"], stats["oldest_age_s"])
                self.pending_now[name] = stats["pending"]
        return sum(self.pending_now.values())


class Progress:
    """A plain ``\\r`` progress line on stderr, redrawn at most five times a second."""

    def __init__(self, total: int, out: TextIO = sys.stderr, width: int = 30) -> None:
        self.total, self.out, self.width = total, out, width
        self.started = time.perf_counter()
        self._drawn = 0.0

    def update(self, done: int, note: str = "", *, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._drawn < 0.2:
            return
        self._drawn = now
        filled = self.width * done // max(self.total, 1)
        rate = done / max(now - self.started, 1e-9)
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"\r  check-ins [{bar}] {done}/{self.total} {rate:,.0f}/s {note}"
        self.out.write(line.ljust(100))
        self.out.flush()

    def finish(self, done: int, note: str = "") -> None:
        self.update(done, note, force=True)
        self.out.write("\n")
        self.out.flush()

    def note(self, text: str, end: str = "") -> None:
        """Overwrite the current line with ``text`` (the drain phase's progress)."""
        self.out.write("\r" + text.ljust(100) + end)
        self.out.flush()


def load_world(game: Game, world: World) -> None:
    game.add_users(world.users)
    game.add_venues(world.venues)
    game.set_friends(world.friends)


def run(
    game: Game,
    world: World,
    checkins: list[Checkin],
    *,
    batch: int = 64,
    progress: Progress | None = None,
    workers: int = 1,
    drain_timeout: float = 600.0,
) -> RunStats:
    """Load ``world``, save ``checkins`` in batches with a worker running, then let the worker
    finish the backlog (sampling it) and ``drain()`` what is left."""
    store = game.store
    stats = RunStats(checkins=len(checkins))
    if checkins:
        stats.span = (min(c.at for c in checkins), max(c.at for c in checkins))
    started = time.perf_counter()
    load_world(game, world)
    stats.setup_s = time.perf_counter() - started
    worker = _Workers(game, workers)
    worker.start()
    try:
        saving = time.perf_counter()
        sampled = 0.0
        for start in range(0, len(checkins), batch):
            chunk = checkins[start : start + batch]
            t = time.perf_counter()
            game.check_in_many(chunk)
            stats.batch_latencies_s.append(time.perf_counter() - t)
            if time.perf_counter() - sampled >= SAMPLE_EVERY_S:
                sampled = time.perf_counter()
                stats.sample(store.status())
            if progress is not None:
                progress.update(start + len(chunk), _backlog(stats))
            if worker.failure:
                break
        stats.save_s = time.perf_counter() - saving
        if progress is not None:
            progress.finish(len(checkins), _backlog(stats))
        # the worker keeps running: watch the backlog shrink rather than block in drain()
        draining = time.perf_counter()
        while not worker.failure and time.perf_counter() - draining < drain_timeout:
            left = stats.sample(store.status())
            if progress is not None:
                progress.note(f"  draining: {left} tasks and deliveries pending {_backlog(stats)}")
            if left == 0:
                break
            time.sleep(SAMPLE_EVERY_S)
    finally:
        worker.stop()
    if progress is not None:
        progress.note("", end="\r")
    store.drain(timeout=drain_timeout)  # the rest: retries waiting out their backoff, if any
    stats.drain_s = time.perf_counter() - draining
    stats.status = store.status()
    return stats


class _Workers:
    """``store.run_worker()`` in ``n`` threads (the consumers read their rows for update, so
    the threads need no lock); an error in any of them is raised again by ``stop()``."""

    def __init__(self, game: Game, n: int) -> None:
        self.store = game.store
        self.failure: BaseException | None = None
        self._threads = [
            threading.Thread(target=self._work, name=f"checkin-game-worker-{i}", daemon=True)
            for i in range(n)
        ]

    def _work(self) -> None:
        try:
            self.store.run_worker(poll_interval=0.01)
        except BaseException as exc:
            self.failure = exc
            self.store.stop_worker()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self.store.stop_worker()
        for thread in self._threads:
            thread.join()
        if self.failure is not None:
            raise self.failure


def _backlog(stats: RunStats) -> str:
    """The two longest backlogs at the last sample, e.g. ``normal:1200 game_badge_jobs:40``."""
    worst = sorted(stats.pending_now.items(), key=lambda kv: -kv[1])[:2]
    return " ".join(f"{name.split()[-1]}:{n}" for name, n in worst if n)
