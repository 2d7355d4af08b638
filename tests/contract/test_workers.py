"""Given deferred work and consumers, workers run it at least once and effects land once."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

import persistio as pio
from tests.models import Account, Checkin, Job, SlowJob


def test_consumer_ack_expunges_and_poison_is_dead_lettered(store: pio.Persistio) -> None:
    # Given a consumer that fails on poison jobs, and a batch with one poison job among five
    seen: list[int] = []

    @store.consumer("jobs", batch=10)
    def handle(job: Job) -> None:
        if job.poison:
            raise RuntimeError("cannot process this one")
        seen.append(job.id)

    store.save_many([Job(1), Job(2), Job(3, poison=True), Job(4), Job(5)])

    # When everything is drained
    store.drain(timeout=30)

    # Then the good jobs ran once each, the poison one was retried then dead-lettered,
    # and nothing is left pending in the stream
    assert sorted(seen) == [1, 2, 4, 5]
    status = store.status()
    assert status["streams"]["jobs"] == {"pending": 0, "oldest_age_s": None, "dead_letters": 1}
    assert status["retries"]["jobs"] == 2  # max_deliveries=3: two retries, then dead letter
    assert status["dead_letters"] == 1


def test_redelivered_saves_are_not_enqueued_twice(store: pio.Persistio) -> None:
    # Given a planned save whose transitory write is applied twice (a replay)
    from persistio.testing import planned_writes, replay

    got: list[Job] = []
    store.consumer("jobs")(got.append)
    for work in planned_writes(store, Job(42)):
        replay(store, [work])
        replay(store, [work])

    # When it is drained
    store.drain(timeout=30)

    # Then the consumer saw it once
    assert got == [Job(42)]


def test_transaction_commits_acid_together_and_dispatches_after(store: pio.Persistio) -> None:
    # Given two accounts saved in one transaction
    events: list[Account] = []
    store.consumer("account_events")(events.append)
    a, b = Account(uuid.uuid4().int % 10**9, "ann", 10), Account(uuid.uuid4().int % 10**9, "bo", 5)

    with store.transaction() as tx:
        tx.save(a)
        tx.save(b)

    # Then both rows are committed and their events dispatched
    assert store.get(Account, "accounts", id=a.id) == a
    assert store.get(Account, "accounts", id=b.id) == b
    assert [sorted(r.done) for r in tx.receipts] == [["account_events", "accounts"]] * 2
    store.drain(timeout=30)
    assert sorted(e.id for e in events) == sorted([a.id, b.id])


def test_transaction_that_raises_writes_nothing(store: pio.Persistio) -> None:
    # Given a transaction whose block raises after a save
    events: list[Account] = []
    store.consumer("account_events")(events.append)
    account = Account(uuid.uuid4().int % 10**9, "cy", 1)
    with pytest.raises(ZeroDivisionError), store.transaction() as tx:
        tx.save(account)
        _ = 1 / 0

    # Then neither the row nor its event exists
    store.drain(timeout=30)
    assert store.get(Account, "accounts", id=account.id) is None
    assert events == []


def test_outbox_survives_a_crash_between_commit_and_dispatch(make_store: object) -> None:
    # Given a process that commits a transaction and dies before dispatching its other intents
    crashing = make_store()  # type: ignore[operator]
    account = Account(uuid.uuid4().int % 10**9, "dee", 7)

    def die(works: object) -> None:
        raise SystemExit("process killed")

    crashing._router.dispatch_works = die
    with pytest.raises(SystemExit), crashing.transaction() as tx:
        tx.save(account)

    # When another process drains
    recovering = make_store()  # type: ignore[operator]
    events: list[Account] = []
    recovering.consumer("account_events")(events.append)
    recovering.drain(timeout=30)

    # Then the committed row is there and its event was delivered from the outbox, once
    assert recovering.get(Account, "accounts", id=account.id) == account
    assert events == [account]


def test_run_worker_runs_deferred_tasks_until_stopped(store: pio.Persistio) -> None:
    # Given a worker thread
    thread = threading.Thread(target=store.run_worker, kwargs={"poll_interval": 0.01})
    thread.start()
    checkin = Checkin(uuid.uuid4(), uuid.uuid4().int % 10**9, 3, datetime.now(UTC))
    try:
        # When a save defers its amorphous intent
        store.save(checkin)
        deadline = datetime.now(UTC).timestamp() + 20
        while not store.query(Checkin, "activity", user_id=checkin.user_id):
            assert datetime.now(UTC).timestamp() < deadline, "the worker did not run the task"
            threading.Event().wait(0.02)
    finally:
        store.stop_worker()
        thread.join(timeout=10)

    # Then the worker wrote it, and stopped when asked
    assert store.query(Checkin, "activity", user_id=checkin.user_id) == [checkin]
    assert not thread.is_alive()


def test_drain_times_out_with_what_is_pending(store: pio.Persistio) -> None:
    # Given a consumer that always fails, with retries far apart
    @store.consumer("slow_jobs")
    def fail(job: SlowJob) -> None:
        raise RuntimeError("down")

    store.save(SlowJob(7))

    # When drain is given little time, it raises DrainTimeout naming the stream
    with pytest.raises(pio.DrainTimeout, match="stream:slow_jobs"):
        store.drain(timeout=0.3)


def test_namespaces_keep_apps_out_of_each_others_queues(make_store: Any) -> None:
    # Given two apps sharing one transitory backend, each with its own namespace
    game = make_store(namespace="game")
    cams = make_store(namespace="cams")
    checkin = Checkin(uuid.uuid4(), uuid.uuid4().int % 10**9, 5, datetime.now(UTC))

    # When the game saves a check-in whose activity intent is deferred
    game.save(checkin)

    # Then only the game's normal queue holds it; the other app's drain neither sees nor runs it
    assert game.status()["queues"]["normal"]["pending"] == 1
    assert cams.status()["queues"]["normal"]["pending"] == 0
    cams.drain(timeout=10)
    assert game.status()["queues"]["normal"]["pending"] == 1
    game.drain(timeout=30)
    assert game.query(Checkin, "activity", user_id=checkin.user_id) == [checkin]


def test_a_bad_namespace_is_refused(tmp_path: Any) -> None:
    with pytest.raises(pio.ConfigError, match=r"namespace='Bad Name'"):
        pio.Persistio(data_dir=tmp_path, namespace="Bad Name")
