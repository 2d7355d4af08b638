"""Given range and index reads, the stores answer them (and a real index serves the lookup)."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import persistio as pio
from tests.newcomer_models import ChatLine, Transfer


def test_find_reads_rows_by_an_index(store: pio.Persistio) -> None:
    # Given transfers of two owners
    base = uuid.uuid4().int % 10**9
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    mine = [Transfer(base + i, base, t0 + timedelta(minutes=i), "done", i) for i in range(5)]
    theirs = [Transfer(base + 10 + i, base + 1, t0, "pending", 1) for i in range(3)]
    store.save_many([*mine, *theirs])

    # When they are found by owner (the first field of an index), or by owner and time
    found = store.find(Transfer, "transfers", owner_id=base)
    assert found == mine
    assert store.find(Transfer, "transfers", owner_id=base, limit=2) == mine[:2]
    assert store.find(Transfer, "transfers", owner_id=base, created=t0 + timedelta(minutes=3)) == [
        mine[3]
    ]
    assert [t.id for t in store.find(Transfer, "transfers", state="pending")] == [
        t.id for t in theirs
    ]
    assert store.find(Transfer, "transfers", owner_id=-5) == []


def test_find_refuses_fields_no_index_serves(store: pio.Persistio) -> None:
    with pytest.raises(pio.ValidationError, match=r"no index serves the fields \('cents',\)"):
        store.find(Transfer, "transfers", cents=3)
    # "created" alone is not the first field of ("owner_id", "created")
    with pytest.raises(pio.ValidationError, match="declared indexes"):
        store.find(Transfer, "transfers", created=datetime.now(UTC))
    with pytest.raises(pio.ValidationError, match="limit"):
        store.find(Transfer, "transfers", owner_id=1, limit=0)


def test_the_index_exists_in_the_database(
    store: pio.Persistio, backend_kind: str, request: pytest.FixtureRequest
) -> None:
    # Then the table has the declared indexes, as the database itself lists them
    if backend_kind == "embedded":
        tmp = request.getfixturevalue("tmp_path")
        with sqlite3.connect(tmp / "acid.db") as db:
            names = {r[1] for r in db.execute("PRAGMA index_list('transfers')")}
            plan = " ".join(
                str(r[-1])
                for r in db.execute(
                    "EXPLAIN QUERY PLAN SELECT * FROM transfers WHERE owner_id = 1 ORDER BY id"
                )
            )
        assert "transfers__owner_id_created" in plan
    else:
        raw: Any = request.getfixturevalue("raw_pg")
        names = {
            r[0]
            for r in raw.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'transfers'"
            ).fetchall()
        }
    assert {"transfers__owner_id_created", "transfers__state"} <= names


def test_query_reads_a_time_range_either_way(store: pio.Persistio) -> None:
    # Given a chat room's lines, a minute apart
    room = f"r{uuid.uuid4().hex[:8]}"
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    lines = [ChatLine(i, room, t0 + timedelta(minutes=i), f"line {i}") for i in range(10)]
    store.save_many(lines)
    store.drain(timeout=60)

    # When a range is read: since included, until excluded
    got = store.query(
        ChatLine,
        "chat_lines",
        room=room,
        since=t0 + timedelta(minutes=2),
        until=t0 + timedelta(minutes=5),
        limit=100,
    )
    assert [c.id for c in got] == [4, 3, 2]
    got = store.query(
        ChatLine, "chat_lines", room=room, since=t0 + timedelta(minutes=7), oldest_first=True
    )
    assert [c.id for c in got] == [7, 8, 9]
    got = store.query(ChatLine, "chat_lines", room=room, oldest_first=True, limit=3)
    assert [c.id for c in got] == [0, 1, 2]
    got = store.query(ChatLine, "chat_lines", room=room, until=t0 + timedelta(minutes=2))
    assert [c.id for c in got] == [1, 0]


def test_a_bad_range_is_refused(store: pio.Persistio) -> None:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    with pytest.raises(pio.ValidationError, match=r"since=.* is after until="):
        store.query(ChatLine, "chat_lines", room="x", since=t0, until=t0 - timedelta(seconds=1))
    with pytest.raises(pio.ValidationError, match="naive datetime"):
        store.query(ChatLine, "chat_lines", room="x", since=datetime(2026, 1, 1))
