"""Given the acid backend on PostgreSQL, tables are typed, upserts are guarded, setup evolves."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import psycopg
import pytest

import persistio as pio
from persistio.backends.base import TableSpec, Upsert
from persistio.backends.sql.acid import SQLAcid
from persistio.model.codec import Column
from tests.models import Profile

V1 = TableSpec("evolving", (Column("id", "int", False), Column("name", "str", False)), ("id",))
V2 = TableSpec("evolving", (*V1.columns, Column("score", "float", True)), ("id",))


class Row(NamedTuple):
    values: dict[str, Any]
    ts: int


def upsert(acid: SQLAcid, spec: TableSpec, rows: list[Row]) -> list[bool]:
    return acid.write([Upsert(spec, r.values, r.ts) for r in rows])


@pytest.fixture
def acid(pg_database_url: str) -> Iterator[SQLAcid]:
    backend = SQLAcid(pg_database_url)
    yield backend
    backend.close()


def test_columns_are_typed_after_the_fields(
    pg_database_url: str, raw_pg: Any, tmp_path: Path
) -> None:
    # When a model with every kind of field is set up on PostgreSQL
    with pio.Persistio(acid=pg_database_url, data_dir=tmp_path) as store:
        store.setup()

    # Then the table has one typed column per field, the key, and the hidden write timestamp
    rows = raw_pg.execute(
        "SELECT column_name, data_type, is_nullable, column_default FROM "
        "information_schema.columns WHERE table_name = 'profiles'"
    ).fetchall()
    types = {name: (kind, nullable, default) for name, kind, nullable, default in rows}
    assert types == {
        "user_id": ("bigint", "NO", None),
        "name": ("text", "NO", None),
        "updated": ("timestamp with time zone", "NO", None),
        "balance": ("numeric", "NO", None),
        "score": ("double precision", "NO", None),
        "active": ("boolean", "NO", None),
        "born": ("date", "NO", None),
        "token": ("uuid", "NO", None),
        "avatar": ("bytea", "NO", None),
        "address": ("jsonb", "NO", None),
        "nickname": ("text", "YES", None),
        "_pio_ts": ("bigint", "NO", None),
        "_pio_wid": ("text", "YES", None),
    }
    key = raw_pg.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'profiles'::regclass AND i.indisprimary"
    ).fetchall()
    assert key == [("user_id",)]
    assert Profile.__persistio_plan__  # type: ignore[attr-defined]


def test_an_older_write_never_wins(acid: SQLAcid, raw_pg: Any) -> None:
    # Given a row written at ts=200
    acid.setup([V1])
    upsert(acid, V1, [Row({"id": 1, "name": "new"}, 200)])

    # When an older write (a replay) and an equal one arrive
    older = upsert(acid, V1, [Row({"id": 1, "name": "old"}, 100)])
    same = upsert(acid, V1, [Row({"id": 1, "name": "same-ts"}, 200)])

    # Then the older one is answered as superseded (a replay of the same write holds the same
    # timestamp: it is the stored write), and the stored row is still the newest
    assert older == [False]
    assert same == [True]
    assert raw_pg.execute("SELECT name, _pio_ts FROM evolving WHERE id = 1").fetchall() == [
        ("new", 200)
    ]

    # And a batch with two writes of one key keeps the newer, whatever its position
    took = upsert(acid, V1, [Row({"id": 2, "name": "b"}, 5), Row({"id": 2, "name": "a"}, 3)])
    assert took == [True, False]
    assert raw_pg.execute("SELECT name FROM evolving WHERE id = 2").fetchone() == ("b",)


def test_setup_adds_new_columns_and_never_drops(acid: SQLAcid, raw_pg: Any) -> None:
    # Given a table with a row, made from the first version of a model
    acid.setup([V1])
    upsert(acid, V1, [Row({"id": 3, "name": "kept"}, 1)])

    # When the model gains a field and setup runs again (twice: it is idempotent)
    acid.setup([V2])
    acid.setup([V2])

    # Then the new nullable column exists and the old row is intact
    columns = raw_pg.execute(
        "SELECT column_name, is_nullable FROM information_schema.columns "
        "WHERE table_name = 'evolving' ORDER BY ordinal_position"
    ).fetchall()
    assert ("score", "YES") in columns
    assert raw_pg.execute("SELECT name, score FROM evolving WHERE id = 3").fetchone() == (
        "kept",
        None,
    )

    # And going back to the older declaration drops nothing
    acid.setup([V1])
    assert "score" in {
        c
        for c, _ in raw_pg.execute(
            "SELECT column_name, 1 FROM information_schema.columns WHERE table_name = 'evolving'"
        ).fetchall()
    }


def test_passwords_never_show(tmp_path: Path) -> None:
    # Given a store whose acid URL carries a password and points at nothing
    url = "postgresql+psycopg://app:hunter2secret@127.0.0.1:1/app"
    with pio.Persistio(acid=url, data_dir=tmp_path, connect_timeout=1) as store:
        # Then repr, status and the error raised by a save hide it
        assert "hunter2secret" not in repr(store)
        status = store.status()
        assert "hunter2secret" not in str(status)
        assert status["backends"]["acid"]["healthy"] is False
        assert "***" in status["backends"]["acid"]["url"]
        with pytest.raises(pio.BackendUnavailable) as caught:
            store.save(Lonely(1))
        assert "hunter2secret" not in str(caught.value)


class Lonely(msgspec.Struct, frozen=True):
    id: int


pio.persist(pio.Acid("lonely_rows", key="id"))(Lonely)


def Profile_like() -> Lonely:
    return Lonely(1)


def test_a_storm_of_misses_runs_one_rebuild(pg_database_url: str, tmp_path: Path) -> None:
    # Given a profile whose volatile copy is missing (an embedded cache, empty in a new store)
    from tests.contract.test_save_and_read import make_profile

    with pio.Persistio(acid=pg_database_url, data_dir=tmp_path) as first:
        profile = make_profile(uuid.uuid4().int % 10**12)
        first.save(profile)
    with pio.Persistio(acid=pg_database_url, data_dir=tmp_path) as store:
        # When 16 threads miss on it at once
        barrier = threading.Barrier(16)
        results: list[Any] = []
        rebuilds: list[object] = []
        store.on("rebuilding", lambda _event, fields: rebuilds.append(fields))

        def read() -> None:
            barrier.wait()
            results.append(store.get(Profile, "profile_cache", user_id=profile.user_id))

        threads = [threading.Thread(target=read) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        # Then all got the profile, and the rebuild ran far fewer times than the misses
        assert results == [profile] * 16
        assert 1 <= len(rebuilds) <= 2  # a late thread may hit the stored copy


OTHER = TableSpec("evolving_other", (Column("id", "int", False),), ("id",))


def test_a_batch_over_several_tables_commits_as_one(acid: SQLAcid, raw_pg: Any) -> None:
    # Given two tables, and a batch whose second table's row is refused (NULL in a NOT NULL)
    acid.setup([V1, OTHER])
    good = Upsert(V1, {"id": 10, "name": "ok"}, 1)
    bad = Upsert(OTHER, {"id": None}, 1)

    # When the batch is written
    with pytest.raises(pio.ValidationError):
        acid.write([good, bad])

    # Then neither row exists: one transaction; and a good batch lands in both tables
    assert raw_pg.execute("SELECT count(*) FROM evolving WHERE id = 10").fetchone() == (0,)
    assert acid.write([good, Upsert(OTHER, {"id": 10}, 1)]) == [True, True]
    assert raw_pg.execute("SELECT count(*) FROM evolving_other").fetchone() == (1,)


def test_options_in_the_url_reach_the_write_connections(pg_database_url: str) -> None:
    # Given a URL whose libpq options hold a space (they did not survive a round trip through
    # SQLAlchemy's URL text: every write failed)
    url = f"{pg_database_url}?options=-c%20application_name%3Dpio_url_options"
    acid = SQLAcid(url)
    try:
        acid.setup([V1])
        # When a row is written, then it lands
        assert acid.write([Upsert(V1, {"id": 30, "name": "opts"}, 1)]) == [True]
    finally:
        acid.close()


def test_a_write_past_its_deadline_is_not_sent(acid: SQLAcid, raw_pg: Any) -> None:
    # Given a write whose deadline has already passed
    acid.setup([V1])

    # When it is written, then it is refused, nothing is committed, and the next write works
    with pytest.raises(pio.BackendUnavailable, match="deadline"):
        acid.write([Upsert(V1, {"id": 11, "name": "late"}, 1)], time.monotonic() - 0.01)
    assert raw_pg.execute("SELECT count(*) FROM evolving WHERE id = 11").fetchone() == (0,)
    assert acid.write([Upsert(V1, {"id": 11, "name": "on time"}, 2)]) == [True]


def test_the_server_refuses_a_write_it_runs_after_the_deadline(acid: SQLAcid, raw_pg: Any) -> None:
    # Given the guarded upsert, as a paused server would run it after the pause: its deadline
    # (on the server's clock) already past
    from persistio.backends.sql.pg_writes import Statements, parameters

    acid.setup([V1])
    rows = [Upsert(V1, {"id": 12, "name": "late"}, 1)]
    sql = Statements().upsert(V1, guarded=True, single=True)

    # When the server runs it, then it fails (the transaction aborts) and nothing is written
    with pytest.raises(psycopg.errors.DivisionByZero):
        raw_pg.execute(sql, parameters(V1, rows, time.time() - 1))
    raw_pg.rollback()
    assert raw_pg.execute("SELECT count(*) FROM evolving WHERE id = 12").fetchone() == (0,)
    # And within its deadline the same statement writes
    raw_pg.execute(sql, parameters(V1, rows, time.time() + 5))
    assert raw_pg.execute("SELECT name FROM evolving WHERE id = 12").fetchone() == ("late",)
