"""Property: replays, duplicates, reorders, re-saves, uncounts and worker kills never change a
count: every series equals a plain Python count of what was saved.

Each example saves hits through the normal path (deferred tasks run by a worker that is stopped
and started at random points, or a ``persistio worker`` process SIGKILLed mid-run and started
again) and through planned writes applied any number of times in any order (what spool
replays and redeliveries do), on the embedded and the real backends.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import persistio as pio
from persistio.testing import planned_uncount, planned_writes, replay
from tests.models import HOUR, MINUTE, Hit

REPO = Path(__file__).resolve().parents[2]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WINDOW = 3 * HOUR

# one action per hit: how it reaches the store, and what happens to it afterwards
ROUTES = ("save", "replay", "save+resave", "replay+resave", "save+uncount", "replay+uncount")
actions = st.lists(
    st.tuples(
        st.integers(0, 2),  # page
        st.integers(0, int(WINDOW / MINUTE) - 1),  # minute of the event
        st.integers(1, 3),  # weight
        st.sampled_from(ROUTES),
        st.integers(1, 3),  # times each planned write is applied
    ),
    min_size=1,
    max_size=40,
)


def floor(at: datetime, size: timedelta) -> datetime:
    return EPOCH + (at - EPOCH) // size * size


@dataclass
class Expected:
    """The plain Python count of what the test did."""

    events: dict[int, tuple[str, datetime, int]] = field(default_factory=dict)  # id -> newest
    saves: Counter[tuple[str, datetime]] = field(default_factory=Counter)  # (page, minute) -> w
    pending: list[Any] = field(default_factory=list)  # planned writes to apply, with repeats

    def saved(self, hit: Hit, written_us: int) -> None:
        self.events[hit.id] = (hit.page, floor(hit.at, MINUTE), hit.weight)
        minute = floor(EPOCH + timedelta(microseconds=written_us), MINUTE)
        self.saves[(hit.page, minute)] += hit.weight

    def uncounted(self, hit: Hit) -> None:
        self.events[hit.id] = (hit.page, floor(hit.at, MINUTE), 0)

    def by_minute(self, page: str) -> Counter[datetime]:
        found = Counter[datetime]()
        for p, minute, weight in self.events.values():
            if p == page:
                found[minute] += weight
        return found


def act(store: pio.Persistio, expected: Expected, hit: Hit, route: str, times: int) -> None:
    """Save ``hit`` by ``route``; planned writes are queued ``times`` times for later."""

    def once(obj: Hit) -> None:
        if route.startswith("save"):
            receipt = store.save(obj)
            expected.saved(obj, write_us(receipt.write_id))
        else:
            works = planned_writes(store, obj)
            expected.saved(obj, works[0].task.ts)
            expected.pending.extend(works * times)

    once(hit)
    if route.endswith("+resave"):
        once(Hit(hit.id, hit.page, hit.at, weight=hit.weight + 10))
    elif route.endswith("+uncount"):
        expected.pending.extend(planned_uncount(store, hit) * times)
        expected.uncounted(hit)


def check(store: pio.Persistio, expected: Expected, pages: list[str], base: datetime) -> None:
    """Every per-minute series, hourly series and total equals the Python count."""
    for p in pages:
        minutes = expected.by_minute(p)
        series = store.counts(Hit, "hit_events", since=base, until=base + WINDOW, page=p)
        assert series == [(base + i * MINUTE, minutes[base + i * MINUTE]) for i in range(180)]
        hours = store.counts(
            Hit, "hit_events", since=base, until=base + WINDOW, page=p, granularity=HOUR
        )
        assert [v for _, v in hours] == [
            sum(n for m, n in minutes.items() if base + i * HOUR <= m < base + (i + 1) * HOUR)
            for i in range(3)
        ]
        total = store.count(Hit, "hit_events", since=base, until=base + WINDOW, page=p)
        assert total == sum(minutes.values())
        saves = {m: n for (q, m), n in expected.saves.items() if q == p}
        if saves:
            first, last = min(saves), max(saves) + MINUTE
            got = store.counts(Hit, "hit_saves", since=first, until=last, page=p)
            assert {m: n for m, n in got if n} == saves
            assert store.count(Hit, "hit_saves", since=first, until=last, page=p) == sum(
                saves.values()
            )


def write_us(write_id: str) -> int:
    """A write id is a UUIDv7: its first 48 bits are the write time in milliseconds."""
    return int(write_id.replace("-", "")[:12], 16) * 1000


def example(seed: int) -> tuple[list[str], datetime, random.Random]:
    run = uuid.uuid4().hex[:8]
    return (
        [f"{run}-{i}" for i in range(3)],
        floor(datetime.now(UTC), HOUR) - WINDOW,
        random.Random(seed),
    )


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=actions, seed=st.integers(0, 2**32), stops=st.sets(st.integers(0, 39), max_size=4))
def test_counts_equal_a_python_count_whatever_replays_and_worker_restarts_do(
    store: pio.Persistio, plan: list[tuple[int, int, int, str, int]], seed: int, stops: set[int]
) -> None:
    # Given a worker running beside the saves, stopped and started again at random points
    pages, base, rng = example(seed)
    expected = Expected()
    worker = Worker(store)
    worker.start()
    try:
        # When hits are saved by every route, and planned writes applied in any order, any
        # number of times, interleaved with the saves
        for i, (p, minute, weight, route, times) in enumerate(plan):
            act(store, expected, Hit(i, pages[p], base + minute * MINUTE, weight), route, times)
            if i in stops:
                worker.stop()
                worker.start()
            if rng.random() < 0.3:
                flush(store, expected, rng)
        flush(store, expected, rng)
    finally:
        worker.stop()
    store.drain(timeout=60)

    # Then every count equals the plain Python count
    check(store, expected, pages, base)


@pytest.mark.slow
@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    # no shrinking: an example starts several processes, so shrinking one takes many minutes;
    # a failure is reported with its full example
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
)
@given(
    plan=st.lists(
        st.tuples(
            st.integers(0, 2),
            st.integers(0, int(WINDOW / MINUTE) - 1),
            st.integers(1, 3),
            st.sampled_from(ROUTES),
            st.integers(1, 3),
        ),
        min_size=150,
        max_size=300,
    ),
    seed=st.integers(0, 2**32),
    kills=st.lists(st.floats(0.0, 0.1), min_size=1, max_size=3),
)
def test_counts_stay_exact_when_worker_processes_are_killed(
    make_store: Any,
    tmp_path: Path,
    plan: list[tuple[int, int, int, str, int]],
    seed: int,
    kills: list[float],
) -> None:
    # Given hits saved by every route, the deferred ones left on the queues
    store: pio.Persistio = make_store()
    pages, base, rng = example(seed)
    expected = Expected()
    for i, (p, minute, weight, route, times) in enumerate(plan):
        act(store, expected, Hit(i, pages[p], base + minute * MINUTE, weight), route, times)

    # When worker processes take the queues and are SIGKILLed mid-run (their claimed tasks
    # come back a second later), planned writes replayed here after each kill; then a last
    # worker runs to the end and stops cleanly
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PERSISTIO_DATA_DIR": str(tmp_path),
        **{f"PERSISTIO_{t.value.upper()}_URL": u for t, u in store.urls.items()},
    }
    for delay in kills:
        child = start_worker(env, tmp_path)
        wait_for_progress(store, child)
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
        flush(store, expected, rng)
    if pending(store):  # what the killed workers claimed comes back after a second
        child = start_worker(env, tmp_path)
        try:
            wait_for_queues(store, child)
        finally:
            child.send_signal(signal.SIGTERM)
            _, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
    store.drain(timeout=60)

    # Then every count equals the plain Python count
    check(store, expected, pages, base)


def flush(store: pio.Persistio, expected: Expected, rng: random.Random) -> None:
    """Apply the queued planned writes in a random order (some of them twice in a row)."""
    works, expected.pending = expected.pending, []
    rng.shuffle(works)
    for work in works:
        replay(store, [work] * rng.choice((1, 1, 2)))


class Worker:
    """``run_worker`` on a thread, stopped and started like a process restarted."""

    def __init__(self, store: pio.Persistio) -> None:
        self.store = store
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(
            target=self.store.run_worker, kwargs={"poll_interval": 0.005}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.store.stop_worker()
        if self.thread is not None:
            self.thread.join(timeout=30)
            assert not self.thread.is_alive()


def start_worker(env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "persistio.cli", "worker", "tests.contract.count_worker_app:store"],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def pending(store: pio.Persistio) -> int:
    return sum(q["pending"] for q in store.status()["queues"].values())


def wait_for_progress(store: pio.Persistio, child: subprocess.Popen[str]) -> None:
    """Until the worker has acknowledged some tasks: it is killed in the middle of its run."""
    before = pending(store)
    deadline = time.monotonic() + 60
    while before and pending(store) >= before:
        assert child.poll() is None, "the worker died"
        assert time.monotonic() < deadline, "the worker did not start"
        time.sleep(0.02)


def wait_for_queues(store: pio.Persistio, child: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while pending(store):
        assert child.poll() is None, "the worker died"
        assert time.monotonic() < deadline, f"the worker is too slow: {store.status()['queues']}"
        time.sleep(0.2)
