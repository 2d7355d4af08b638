"""Given deferred intents with promises (`within=`), lag is measured against them, workers run
urgent work first, and `on_lag` holds the queues when the promise cannot be kept."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import persistio as pio
from tests.promise_models import (
    BacklogItem,
    FeedItem,
    LateItem,
    LaterItem,
    RawItem,
    SoonerItem,
    UrgentItem,
)

FAST = pio.TaskQueues(pressure_refresh=0.05, slow_wait=0.2)


def _uid() -> str:
    return uuid.uuid4().hex


def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _lateness(store: pio.Persistio, level: str) -> float:
    late = store.status()["load"]["by_priority"][level]["lateness_s"]
    return 0.0 if late is None else float(late)


def test_lag_is_measured_against_each_intents_promise(store: pio.Persistio) -> None:
    # Given tasks done right away, and tasks of a 50 ms promise done 300 ms after their save
    on_time = [FeedItem(_uid()) for _ in range(5)]
    store.save_many(on_time)
    store.drain(timeout=30)
    late = [LateItem(_uid()) for _ in range(4)]
    store.save_many(late)
    time.sleep(0.3)
    store.drain(timeout=30)

    # Then status() says, per intent, how many were done within the promise
    promises = store.status()["promises"]
    feed, slow = promises["lag_feed"], promises["lag_late"]
    assert (feed["within_s"], feed["on_lag"], feed["priority"]) == (0.3, "shed", "low")
    assert (feed["done"], feed["total_on_time"], feed["total_late"]) == (5, 5, 0)
    assert feed["within_share"] == 1.0
    assert (slow["done"], slow["total_on_time"], slow["total_late"]) == (4, 0, 4)
    assert slow["within_share"] == 0.0
    assert slow["lag_p50_s"] >= 0.3
    assert store.get(LateItem, "lag_late", id=late[0].id) == late[0]


def test_shed_drops_new_tasks_of_a_late_queue_and_counts_them(make_store: Any) -> None:
    store = make_store(task_queues=FAST)
    # Given a LOW queue whose oldest task is older than the feed's 300 ms promise (no worker)
    first = FeedItem(_uid())
    assert store.save(first).deferred == ("lag_feed",)
    _until(lambda: _lateness(store, "low") > 0.3)

    # When more feed items are saved
    later = [FeedItem(_uid()) for _ in range(20)]
    receipts = store.save_many(later)

    # Then their tasks are shed, counted, and the queue did not grow
    assert {r.shed for r in receipts} == {("lag_feed",)}
    assert {r.deferred for r in receipts} == {()}
    status = store.status()
    assert status["shed"] == {"lag_feed": 20}
    assert status["queues"]["low"]["pending"] == 1
    store.drain(timeout=30)
    assert store.get(FeedItem, "lag_feed", id=first.id) == first
    assert all(store.get(FeedItem, "lag_feed", id=f.id) is None for f in later)


def test_slow_makes_a_save_wait_a_bounded_time_then_go_on(make_store: Any) -> None:
    store = make_store(task_queues=FAST)
    # Given a LOW queue running later than the raw intent's 1 s promise (no worker)
    store.save(RawItem(_uid()))
    _until(lambda: _lateness(store, "low") > 1.0)

    # When a raw item is saved
    started = time.monotonic()
    receipt = store.save(RawItem("waited"))
    waited = time.monotonic() - started

    # Then the save waited (at most slow_wait, 0.2 s), was still deferred, and was counted
    assert 0.19 <= waited < 1.0
    assert receipt.deferred == ("lag_raw",)
    assert store.status()["slowed"] == {"lag_raw": 1}
    store.drain(timeout=30)
    assert store.get(RawItem, "lag_raw", id="waited") == RawItem("waited")


def _overload(store: pio.Persistio, seconds: float) -> list[float]:
    """Save raw items as fast as one thread can while a worker runs; the LOW queue's oldest
    age, sampled every 0.1 s."""
    store.save(RawItem(_uid()))  # warm up: the raw table is prepared before the clock runs
    store.drain(timeout=30)
    worker = threading.Thread(target=store.run_worker)
    worker.start()
    ages: list[float] = []
    stop = time.monotonic() + seconds
    try:
        next_look = 0.0
        while time.monotonic() < stop:
            store.save_many([RawItem(_uid()) for _ in range(200)])
            if time.monotonic() >= next_look:
                age = store.status()["queues"]["low"]["oldest_age_s"]
                ages.append(0.0 if age is None else age)
                next_look = time.monotonic() + 0.1
    finally:
        store.stop_worker()
        worker.join()
    return ages


def test_slow_keeps_the_oldest_task_near_its_bound_under_overload(make_store: Any) -> None:
    # Given a single worker, and one thread saving faster than it can serve (the worker takes
    # 16 tasks per batch: with Cassandra's writes as fast as they now are, a worker taking 64
    # could sometimes keep up with the saving thread, and then nothing is there to hold back)
    store = make_store(
        task_queues=pio.TaskQueues(pressure_refresh=0.05, slow_wait=0.5), worker_batch=16
    )

    # When the load lasts 5 s
    ages = _overload(store, 5.0)

    # Then saves were slowed, and the oldest raw task stayed around its 1 s bound (a slowed save
    # still goes on after slow_wait, and the worker's pace varies: peaks stay under twice it)
    slowed = store.status()["slowed"].get("lag_raw", 0)
    assert slowed > 0, "the load never outran the worker: nothing to hold back"
    assert max(ages) < 2.0, ages


def test_high_stays_within_its_slice_while_a_100k_low_backlog_waits(store: pio.Persistio) -> None:
    # Given 100,000 LOW tasks queued, and a worker running
    store.save_many(BacklogItem(i % 97, i) for i in range(100_000))
    worker = threading.Thread(target=store.run_worker)
    worker.start()
    try:
        # When urgent (HIGH, within 1 s) items arrive for 2 s
        urgent = [UrgentItem(i, time.time()) for i in range(20)]
        for item in urgent:
            store.save(item)
            time.sleep(0.1)
        _until(lambda: store.get(UrgentItem, "lag_urgent", id=19) is not None)
    finally:
        store.stop_worker()
        worker.join()

    # Then every one was done within its promise, while LOW work was still waiting
    status = store.status()
    urgent_lag = status["promises"]["lag_urgent"]
    assert (urgent_lag["total_on_time"], urgent_lag["total_late"]) == (20, 0)
    assert urgent_lag["lag_max_s"] < 1.0
    assert status["queues"]["low"]["pending"] > 0
    assert all(store.get(UrgentItem, "lag_urgent", id=u.id) == u for u in urgent)


def test_a_low_batch_yields_to_high_work_between_slices(make_store: Any) -> None:
    # Given a worker that takes LOW work in one batch of 6,000, in slices of 100
    store = make_store(worker_batch=6000, task_queues=pio.TaskQueues(preempt_every=100))
    store.save_many(BacklogItem(i % 13, i) for i in range(6000))
    stepping = threading.Thread(target=store.step)
    stepping.start()
    try:
        # When a HIGH task arrives while that one step is running its first slices
        _until(lambda: store.status()["queues"]["low"]["pending"] < 6000)
        store.save(UrgentItem(1, time.time()))
        assert stepping.is_alive(), "the step ended before HIGH work arrived"
    finally:
        stepping.join()

    # Then that same step ran the HIGH task too, before finishing its LOW batch
    assert store.get(UrgentItem, "lag_urgent", id=1) is not None
    assert store.status()["queues"]["low"]["pending"] == 0
    assert store.status()["queues"]["high"]["pending"] == 0


def test_status_reports_arrival_and_service_rates_and_workers_needed(
    store: pio.Persistio,
) -> None:
    # Given a first look, then 500 tasks saved and served
    assert store.status()["load"]["workers_needed"] is None
    store.save_many(BacklogItem(1, i) for i in range(500))
    store.drain(timeout=60)
    time.sleep(0.3)

    # Then the next look knows how fast work arrives and is served, and what that needs
    load = store.status()["load"]
    low = load["by_priority"]["low"]
    assert low["arrival_per_s"] > 0
    assert low["served_per_s"] > 0
    assert 0 < low["task_s"] < 1
    assert low["pending"] == 0
    assert load["workers_needed"] >= 1


def test_run_worker_threads_serve_the_queues_together(store: pio.Persistio) -> None:
    # Given 2,000 deferred tasks and a worker with 4 threads
    base = uuid.uuid4().int % 10**9
    items = [BacklogItem(base + i % 7, i) for i in range(2000)]
    store.save_many(items)
    worker = threading.Thread(target=store.run_worker, kwargs={"threads": 4})
    worker.start()
    try:
        _until(lambda: store.status()["queues"]["low"]["pending"] == 0, timeout=60)
    finally:
        store.stop_worker()
        worker.join()
    # Then every task landed once
    rows = store.query(BacklogItem, "lag_backlog", bucket=base + 3, limit=1000)
    assert sorted(r.seq for r in rows) == [i for i in range(2000) if i % 7 == 3]
    assert store.status()["load"]["by_priority"]["low"]["pending"] == 0


@pytest.mark.parametrize("bad", [0, 257, 1.5, True])
def test_run_worker_refuses_a_bad_thread_count(store: pio.Persistio, bad: Any) -> None:
    with pytest.raises(pio.ConfigError, match=re.escape(f"threads={bad!r}")):
        store.run_worker(threads=bad)


def test_a_batch_runs_the_earliest_deadline_first(make_store: Any) -> None:
    # Given, in one LOW queue, 1,500 tasks promised within 10 minutes, then 1,500 promised
    # within 1 s, and a worker that takes all 3,000 in one batch, in slices of 100
    store = make_store(worker_batch=3000, task_queues=pio.TaskQueues(preempt_every=100))
    store.save_many(LaterItem(_uid()) for _ in range(1500))
    store.save_many(SoonerItem(_uid()) for _ in range(1500))

    # When one step runs the batch
    assert store.step()

    # Then the later-saved tasks with the nearer deadline ran first: each of them waited less
    # than any of the earlier-saved ones with the distant deadline
    promises = store.status()["promises"]
    sooner, later = promises["edf_sooner"], promises["edf_later"]
    assert (sooner["done"], later["done"]) == (1500, 1500)
    assert sooner["lag_max_s"] < later["lag_p50_s"], (sooner, later)
    assert store.status()["queues"]["low"]["pending"] == 0
