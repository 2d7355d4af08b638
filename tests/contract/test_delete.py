"""Given delete(), a tombstone under last-write-wins: an older save arriving later never brings
a deleted value back, in any store and through any path (queues, spool, replay)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import persistio as pio
from persistio.testing import planned_delete, planned_writes, replay
from tests import redis_clients
from tests.models import HOUR, Hit, Versioned

from .conftest import store_urls

KEYED = ("lww_rows", "lww_cache", "lww_docs")


def held(store: pio.Persistio, k: str) -> dict[str, Any]:
    return {intent: store.get(Versioned, intent, k=k) for intent in KEYED}


def test_delete_removes_what_save_wrote_in_every_keyed_store(store: pio.Persistio) -> None:
    # Given a saved object, settled in every store
    k = f"gone'{{;{uuid.uuid4().hex[:8]}"
    obj = Versioned(k, 1)
    store.save(obj)
    store.drain(timeout=30)
    assert held(store, k) == dict.fromkeys(KEYED, obj)

    # When it is deleted
    receipt = store.delete(obj)

    # Then the real-time stores are cleared before delete returns, the amorphous one (deferred,
    # through the task queue) once drained, and the stream is left to its consumer
    assert sorted(receipt.done) == ["lww_cache", "lww_rows"]
    assert receipt.deferred == ("lww_docs",)
    assert store.get(Versioned, "lww_rows", k=k) is None
    assert store.get(Versioned, "lww_cache", k=k) is None
    store.drain(timeout=30)
    assert held(store, k) == dict.fromkeys(KEYED)
    assert store.query(Versioned, "lww_docs", k=k) == []
    assert list(store.pages(Versioned, "lww_docs", k=k)) == []
    assert store.get_many(Versioned, "lww_cache", [{"k": k}]) == [None]


def test_a_late_older_save_never_resurrects_a_deleted_value(store: pio.Persistio) -> None:
    # Given a save that was planned, then a delete planned after it (so newer)
    k = f"late-{uuid.uuid4().hex[:8]}"
    older = planned_writes(store, Versioned(k, 1))
    delete = planned_delete(store, Versioned(k, 1))

    # When the delete lands first and the older save arrives later, twice (a replay)
    replay(store, delete)
    replay(store, older)
    replay(store, older)

    # Then nothing is back, in any store
    assert held(store, k) == dict.fromkeys(KEYED)

    # When a newer save comes, it wins over the delete; replaying the delete changes nothing
    newer = Versioned(k, 2)
    store.save(newer)
    store.drain(timeout=30)
    replay(store, delete)
    assert held(store, k) == dict.fromkeys(KEYED, newer)


def test_delete_of_one_intents_value(store: pio.Persistio) -> None:
    # Given an object in every store
    k = f"one-{uuid.uuid4().hex[:8]}"
    obj = Versioned(k, 1)
    store.save(obj)
    store.drain(timeout=30)

    # When only its cache entry and its acid row are deleted by key
    store.delete(Versioned, "lww_cache", k=k)
    receipt = store.delete(Versioned, "lww_rows", k=k)

    # Then those are gone and the document stays
    assert receipt.done == ("lww_rows",)
    assert held(store, k) == {"lww_rows": None, "lww_cache": None, "lww_docs": obj}


def test_delete_refuses_what_it_cannot_delete(store: pio.Persistio) -> None:
    with pytest.raises(pio.ValidationError, match="transitory"):
        store.delete(Versioned, "lww_events", k="x")
    with pytest.raises(pio.ValidationError, match="exactly the key fields"):
        store.delete(Versioned, "lww_rows", key="x")
    with pytest.raises(pio.ValidationError, match="a Count"):
        store.delete(Hit, "hit_events", page="x")
    with pytest.raises(pio.ValidationError, match="model class"):
        store.delete(Versioned("x", 1), "lww_rows", k="x")
    with pytest.raises(pio.IntentError):
        store.delete(object())


def test_delete_uncounts_a_counted_object(store: pio.Persistio) -> None:
    # Given a hit counted by identity, settled
    page = f"page-{uuid.uuid4().hex[:8]}"
    at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - HOUR
    hit = Hit(uuid.uuid4().int % 10**12, page, at + timedelta(minutes=5))
    older = planned_writes(store, hit)
    replay(store, older)
    assert store.count(Hit, "hit_events", since=at, until=at + HOUR, page=page) == 1

    # When it is deleted, and its save is replayed afterwards
    store.delete(hit)
    store.drain(timeout=30)
    replay(store, older)

    # Then it is counted no more
    assert store.count(Hit, "hit_events", since=at, until=at + HOUR, page=page) == 0


def test_async_delete(request: pytest.FixtureRequest, backend_kind: str, tmp_path: Path) -> None:
    import asyncio

    urls: dict[str, Any] = store_urls(request, backend_kind)
    k = f"async-{uuid.uuid4().hex[:8]}"

    async def main() -> tuple[Any, Any]:
        async with pio.AsyncPersistio(**urls, data_dir=tmp_path) as aio:
            await aio.setup()
            await aio.save(Versioned(k, 1))
            await aio.delete(Versioned, "lww_rows", k=k)
            await aio.delete(Versioned(k, 1))
            await aio.drain(timeout=30)
            return (
                await aio.get(Versioned, "lww_rows", k=k),
                await aio.get(Versioned, "lww_docs", k=k),
            )

    assert asyncio.run(main()) == (None, None)


NOBODY_REDIS = "redis://127.0.0.1:1/0"  # nothing listens: every call fails at once


def test_a_delete_buffered_in_the_spool_lands_on_replay_and_stays(
    store: pio.Persistio, tmp_path: Path
) -> None:
    # Given a document saved and settled, and the save's tasks planned before the delete
    k = f"spooled-{uuid.uuid4().hex[:8]}"
    obj = Versioned(k, 1)
    older = planned_writes(store, obj)
    store.save(obj)
    store.drain(timeout=30)
    urls = {t.value: u for t, u in store.urls.items()}

    # When it is deleted by a process whose task queue is down (the deferred tombstone is
    # spooled), and a process on the same spool, with every server up, replays it
    with pio.Persistio(**{**urls, "transitory": NOBODY_REDIS}, data_dir=tmp_path / "a") as down:
        receipt = down.delete(obj)
    assert receipt.buffered == ("lww_docs",)
    with pio.Persistio(**urls, data_dir=tmp_path / "a") as up:
        up.drain(timeout=30)
        assert up.status()["spool"]["depth"] == 0
        assert up.get(Versioned, "lww_docs", k=k) is None

        # and the older save is replayed after it
        replay(up, older)

        # Then the document and the row stay deleted (the embedded volatile map is per
        # process: the new one never saw the delete)
        assert up.get(Versioned, "lww_docs", k=k) is None
        assert up.get(Versioned, "lww_rows", k=k) is None


def test_the_real_stores_hold_tombstones(
    request: pytest.FixtureRequest, raw_pg: Any, tmp_path: Path
) -> None:
    # Given an object saved and deleted on the real servers
    urls: dict[str, Any] = store_urls(request, "real")
    k = f"raw-{uuid.uuid4().hex[:8]}"
    with pio.Persistio(**urls, data_dir=tmp_path) as real:
        real.setup()
        real.save(Versioned(k, 1))
        receipt = real.delete(Versioned(k, 1))
        real.drain(timeout=30)

    # Then PostgreSQL has no row and a tombstone with the delete's write id
    assert raw_pg.execute("SELECT count(*) FROM lww_rows WHERE k = %s", [k]).fetchone() == (0,)
    gone = raw_pg.execute("SELECT _pio_wid FROM lww_rows__pio_gone WHERE k = %s", [k]).fetchone()
    assert gone == (receipt.write_id,)
    # and Redis holds an empty value stamped by the delete, expiring like the value would
    client = redis_clients.client(urls["volatile"])
    try:
        keys = list(client.scan_iter(match=f"pio:v:lww_cache:*{k}*"))
        assert len(keys) == 1
        assert client.hget(keys[0], "p") == b""
        assert 0 < client.ttl(keys[0]) <= 3600
    finally:
        client.close()


def test_acid_tombstones_are_collected_after_their_window(make_store: Any) -> None:
    # Given a store keeping acid tombstones one second, and a delete newer than a planned save
    store: pio.Persistio = make_store(tombstone_window=timedelta(seconds=1))
    k, other = f"window-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    older = [w for w in planned_writes(store, Versioned(k, 1)) if w.bound.name == "lww_rows"]
    store.delete(Versioned, "lww_rows", k=k)

    # When the older save arrives within the window, it does not land
    replay(store, older)
    assert store.get(Versioned, "lww_rows", k=k) is None
    assert tombstones(store, k) == 1

    # When the window has passed and another delete collects the table's old tombstones
    time.sleep(1.2)
    store.delete(Versioned, "lww_rows", k=other)

    # Then the tombstone is gone (read raw), and an older save arriving now lands, as documented
    assert tombstones(store, k) == 0
    replay(store, older)
    assert store.get(Versioned, "lww_rows", k=k) == Versioned(k, 1)


def tombstones(store: pio.Persistio, k: str) -> int:
    engine = sa.create_engine(store.urls[pio.Tier.ACID])
    try:
        with engine.connect() as conn:
            query = sa.text("SELECT count(*) FROM lww_rows__pio_gone WHERE k = :k")
            return int(conn.execute(query, {"k": k}).scalar_one())
    finally:
        engine.dispose()
