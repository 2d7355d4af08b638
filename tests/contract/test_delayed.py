"""Given a delayed save, its stream entries and deferred tasks wait, across a restart."""

from __future__ import annotations

import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import persistio as pio
from tests import redis_clients
from tests.contract.conftest import REAL_REDIS_DB
from tests.models import Job
from tests.newcomer_models import ChatLine

DELAY = timedelta(seconds=3)


def raw_waiting(request: pytest.FixtureRequest, kind: str, stream: str) -> tuple[int, int]:
    """(entries handed out or due, entries not due yet), as the transitory store holds them."""
    if kind == "embedded":
        tmp = request.getfixturevalue("tmp_path")
        with sqlite3.connect(tmp / "transitory.db") as db:
            due, later = db.execute(
                "SELECT coalesce(sum(visible_at <= ?), 0), coalesce(sum(visible_at > ?), 0)"
                " FROM items WHERE stream = ?",
                (time.time(), time.time(), stream),
            ).fetchone()
        return int(due), int(later)
    raw: Any = redis_clients.client(
        redis_clients.with_db(request.getfixturevalue("redis_url"), REAL_REDIS_DB)
    )
    try:
        key = f"pio:{{{stream}}}"
        return int(raw.xlen(key)), int(raw.zcard(f"{key}:delayed"))
    finally:
        raw.close()


def test_a_delayed_entry_reaches_its_consumer_after_the_delay_even_after_a_restart(
    make_store: Any, backend_kind: str, request: pytest.FixtureRequest
) -> None:
    # Given a job saved with a delay
    first = make_store()
    first.consumer("jobs")(lambda job: None)
    receipt = first.save(Job(1), delay=DELAY)
    assert receipt.done == ("jobs",)
    saved_at = time.monotonic()

    # Then it is stored but not handed out: drain does not wait for it, status shows it
    assert first.drain(timeout=30) == {}
    assert raw_waiting(request, backend_kind, "jobs") == (0, 1)
    assert first.status()["streams"]["jobs"]["delayed"] == 1
    first.close()

    # When another store (a restarted worker) runs after the delay
    seen: list[Job] = []
    second = make_store()
    second.consumer("jobs")(seen.append)
    second.drain(timeout=30)
    if time.monotonic() - saved_at < DELAY.total_seconds() - 0.5:  # (a loaded machine: late)
        assert seen == []  # not yet due
    time.sleep(max(0.0, DELAY.total_seconds() - (time.monotonic() - saved_at)) + 0.2)
    second.drain(timeout=30)

    # Then the consumer got it once, and nothing is left
    assert seen == [Job(1)]
    assert raw_waiting(request, backend_kind, "jobs") == (0, 0)
    assert "delayed" not in second.status()["streams"]["jobs"]


def test_a_delayed_deferred_task_runs_after_the_delay(store: pio.Persistio) -> None:
    # Given a chat line (a deferred, NORMAL intent) saved with not_before
    room = f"r{uuid.uuid4().hex[:8]}"
    line = ChatLine(1, room, datetime.now(UTC), "later")
    receipt = store.save(line, not_before=datetime.now(UTC) + DELAY)
    assert receipt.deferred == ("chat_lines",)
    saved_at = time.monotonic()

    # Then a worker does not run it before it is due
    store.drain(timeout=30)
    assert store.query(ChatLine, "chat_lines", room=room) == []
    assert store.status()["queues"]["normal"]["delayed"] == 1

    # And runs it once it is
    time.sleep(max(0.0, DELAY.total_seconds() - (time.monotonic() - saved_at)) + 0.2)
    store.drain(timeout=30)
    assert store.query(ChatLine, "chat_lines", room=room) == [line]


def test_bad_delays_are_refused(store: pio.Persistio) -> None:
    with pytest.raises(pio.ValidationError, match="give one of the two"):
        store.save(Job(2), delay=DELAY, not_before=datetime.now(UTC))
    with pytest.raises(pio.ValidationError, match="timedelta >= 0"):
        store.save(Job(2), delay=timedelta(seconds=-1))
    with pytest.raises(pio.ValidationError, match="aware datetime"):
        store.save(Job(2), not_before=datetime(2030, 1, 1))
    assert store.status()["streams"]["jobs"]["pending"] == 0


def test_a_delayed_entry_reaches_every_consumer_group(
    store: pio.Persistio, backend_kind: str, request: pytest.FixtureRequest
) -> None:
    from tests.newcomer_models import Signup

    got: dict[str, list[int]] = {"email": [], "sms": []}
    store.consumer("evts", name="email")(lambda s: got["email"].append(s.id))
    store.consumer("evts", name="sms")(lambda s: got["sms"].append(s.id))
    store.save(Signup(5, "a@b.c"), delay=DELAY)
    saved_at = time.monotonic()
    store.drain(timeout=30)
    assert got == {"email": [], "sms": []}
    if backend_kind == "real":  # each group's copy waits in its own delayed set
        raw: Any = redis_clients.client(
            redis_clients.with_db(request.getfixturevalue("redis_url"), REAL_REDIS_DB)
        )
        try:
            assert [raw.zcard(f"pio:{{evts}}:g:{g}:delayed") for g in ("email", "sms")] == [1, 1]
        finally:
            raw.close()
    time.sleep(max(0.0, DELAY.total_seconds() - (time.monotonic() - saved_at)) + 0.2)
    store.drain(timeout=30)
    assert got == {"email": [5], "sms": [5]}


def test_a_task_encoded_before_delays_existed_still_decodes() -> None:
    import msgspec

    from persistio.model.tasks import TASK_DECODER

    old = msgspec.msgpack.encode(["w1", "m:M", "jobs", "transitory", 0, 123, b"x"])
    assert TASK_DECODER.decode(old).not_before == 0.0


def test_a_delayed_save_in_a_transaction_commits_now_and_delivers_when_due(
    store: pio.Persistio, backend_kind: str, request: pytest.FixtureRequest
) -> None:
    from tests.models import Account

    # Given an account saved with a delay inside a transaction
    seen: list[Account] = []
    store.consumer("account_events")(seen.append)
    n = uuid.uuid4().int % 10**9
    with store.transaction() as tx:
        tx.save(Account(n, "ann", 10), delay=DELAY)
    saved_at = time.monotonic()

    # Then its acid row committed with the transaction, and its stream entry waits
    assert store.get(Account, "accounts", id=n) == Account(n, "ann", 10)
    store.drain(timeout=30)
    if time.monotonic() - saved_at < DELAY.total_seconds() - 0.5:  # (a loaded machine: late)
        assert seen == []
        assert raw_waiting(request, backend_kind, "account_events") == (0, 1)

    # And the consumer gets it once it is due
    time.sleep(max(0.0, DELAY.total_seconds() - (time.monotonic() - saved_at)) + 0.2)
    store.drain(timeout=30)
    assert seen == [Account(n, "ann", 10)]
    assert raw_waiting(request, backend_kind, "account_events") == (0, 0)


def test_a_bad_delay_in_a_transaction_is_refused_with_nothing_written(
    store: pio.Persistio,
) -> None:
    from tests.models import Account

    n = uuid.uuid4().int % 10**9
    with (
        pytest.raises(pio.ValidationError, match=r"transaction\(\).save\(delay="),
        store.transaction() as tx,
    ):
        tx.save(Account(n, "bob", 1), delay=timedelta(seconds=-1))
    assert store.get(Account, "accounts", id=n) is None
