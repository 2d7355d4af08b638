"""Given a stream with several declared consumers, each is a consumer group of its own."""

from __future__ import annotations

from typing import Any

import pytest

import persistio as pio
from tests import redis_clients
from tests.contract.conftest import REAL_REDIS_DB
from tests.models import Job
from tests.newcomer_models import Signup


def raw_stream_lengths(request: pytest.FixtureRequest, kind: str, names: list[str]) -> list[int]:
    """What the transitory store itself holds, per stream (read with the raw client)."""
    if kind == "embedded":
        import sqlite3

        tmp = request.getfixturevalue("tmp_path")
        with sqlite3.connect(tmp / "transitory.db") as db:
            return [
                db.execute("SELECT count(*) FROM items WHERE stream = ?", (n,)).fetchone()[0]
                for n in names
            ]
    url = redis_clients.with_db(request.getfixturevalue("redis_url"), REAL_REDIS_DB)
    raw = redis_clients.client(url)
    try:
        keys = [f"pio:{{{n.partition('~')[0]}}}:g:{n.partition('~')[2]}" for n in names]
        return [int(raw.xlen(k)) for k in keys]
    finally:
        raw.close()


def test_every_consumer_receives_every_entry(
    store: pio.Persistio, backend_kind: str, request: pytest.FixtureRequest
) -> None:
    # Given an email and an SMS consumer on one stream, the SMS one failing on some signups
    emails: list[int] = []
    texts: list[int] = []

    @store.consumer("evts", name="email")
    def send_email(s: Signup) -> None:
        emails.append(s.id)

    @store.consumer("evts", name="sms")
    def send_sms(s: Signup) -> None:
        if s.fail_sms:
            raise RuntimeError("no such phone")
        texts.append(s.id)

    # When five signups are saved, one of them failing its SMS
    store.save_many([Signup(i, f"u{i}@x.org", fail_sms=(i == 3)) for i in range(5)])
    assert raw_stream_lengths(request, backend_kind, ["evts~email", "evts~sms"]) == [5, 5]
    store.drain(timeout=30)

    # Then both consumers ran for every signup (but the failing one), and the failure was
    # retried and dead-lettered for the SMS consumer only
    assert sorted(emails) == [0, 1, 2, 3, 4]
    assert sorted(texts) == [0, 1, 2, 4]
    status = store.status()
    assert status["retries"] == {"evts~sms": 1}
    dead = store.dead_letters("evts")
    assert [(d.place, d.attempts) for d in dead] == [("stream:evts~sms", 2)]
    assert raw_stream_lengths(request, backend_kind, ["evts~email", "evts~sms"]) == [0, 0]
    assert status["streams"]["evts"]["dead_letters"] == 1

    # And a redrive goes back to the SMS consumer alone
    assert store.redrive(intent="evts") == 1
    assert raw_stream_lengths(request, backend_kind, ["evts~email", "evts~sms"]) == [0, 1]


def test_a_save_replayed_reaches_each_consumer_once(store: pio.Persistio) -> None:
    # Given a save whose stream write is applied twice (a replay)
    from persistio.testing import planned_writes, replay

    got: dict[str, list[int]] = {"email": [], "sms": []}
    store.consumer("evts", name="email")(lambda s: got["email"].append(s.id))
    store.consumer("evts", name="sms")(lambda s: got["sms"].append(s.id))
    for work in planned_writes(store, Signup(7, "a@b.c")):
        replay(store, [work])
        replay(store, [work])

    # When it is drained, then each consumer saw it once
    store.drain(timeout=30)
    assert got == {"email": [7], "sms": [7]}


def test_consumer_names_are_checked(store: pio.Persistio) -> None:
    # Given a stream that declares its consumers
    store.consumer("evts", name="email")(lambda s: None)

    # Then a second handler under one name, an undeclared name, or no name are refused
    with pytest.raises(pio.IntentError, match="already registered under this name"):
        store.consumer("evts", name="email")
    with pytest.raises(pio.IntentError, match=r"declares no consumer 'push'.*consumers="):
        store.consumer("evts", name="push")
    with pytest.raises(pio.IntentError, match="pass name= one of them"):
        store.consumer("evts")


def test_a_second_unnamed_consumer_is_refused(store: pio.Persistio) -> None:
    # Given a stream with one (unnamed) consumer
    seen: list[Job] = []
    store.consumer("jobs")(seen.append)

    # Then a second one is refused instead of silently replacing the first
    with pytest.raises(pio.IntentError, match=r"already registered.*own name="):
        store.consumer("jobs")
    # unless the swap is asked for
    store.consumer("jobs", replace=True)(seen.append)
    store.save(Job(1))
    store.drain(timeout=30)
    assert seen == [Job(1)]


@pytest.mark.parametrize("consumers", [("Email",), ("a", "a"), "a b"])
def test_bad_consumer_declarations_are_refused(consumers: Any) -> None:
    with pytest.raises(pio.IntentError, match="consumers"):

        @pio.persist(pio.Transitory("bad_groups", consumers=consumers))
        class Bad(pio_struct()):  # type: ignore[misc]
            id: int


def pio_struct() -> Any:
    import msgspec

    return msgspec.Struct
