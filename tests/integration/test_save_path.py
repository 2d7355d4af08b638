"""Given real servers, a save reaches each server once, a save's acid rows commit together, and
concurrent saves share round trips without sharing each other's failures."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis

import persistio as pio

pytestmark = pytest.mark.services


@pio.persist(
    pio.Transitory("sp_events"),
    pio.Volatile("sp_now", key=("id",), ttl=timedelta(hours=1)),
    pio.Volatile("sp_by_user", key=("user", "id"), ttl=timedelta(hours=1)),
    pio.Acid("sp_log", key=("id",), priority=pio.HIGH),
    pio.Acid("sp_audit", key=("id",), priority=pio.LOW),
)
class SpEvent(msgspec.Struct, frozen=True):
    id: int
    user: int
    text: str


@pio.persist(
    pio.Acid("sp_accounts", key=("id",)),
    pio.Acid("sp_ledger", key=("id",)),
)
class SpTransfer(msgspec.Struct, frozen=True):
    id: int
    amount: int
    text: str = ""


@pytest.fixture
def redis_db(redis_url: str) -> Iterator[str]:
    url = f"{redis_url.rsplit('/', 1)[0]}/8"
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()


@pytest.fixture
def store(redis_db: str, pg_database_url: str, tmp_path: Path) -> Iterator[pio.Persistio]:
    with pio.Persistio(
        transitory=redis_db, volatile=redis_db, acid=pg_database_url, data_dir=tmp_path
    ) as s:
        s.setup()
        yield s


def evalsha_calls(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def test_a_save_reaches_redis_in_one_call(store: pio.Persistio, redis_db: str) -> None:
    # Given a model with a stream, two volatile values and two deferred tasks: five Redis writes
    raw = redis.Redis.from_url(redis_db)
    store.save(SpEvent(0, 1, "warm-up"))
    before = evalsha_calls(raw)

    # When 20 objects are saved one by one
    for n in range(1, 21):
        receipt = store.save(SpEvent(n, 7, "x"))
        assert sorted(receipt.done) == ["sp_by_user", "sp_events", "sp_now"]
        assert sorted(receipt.deferred) == ["sp_audit", "sp_log"]

    # Then Redis ran one script call per save, and holds everything each save wrote
    assert evalsha_calls(raw) - before == 20
    assert raw.xlen("pio:{sp_events}") == 21
    assert raw.xlen("pio:{tasks.high}") == raw.xlen("pio:{tasks.low}") == 21
    assert raw.exists(*(f"pio:v:sp_by_user:{{7:{n}}}" for n in range(1, 21))) == 20
    # And the deferred tasks carry no dedup marker: only the consumer's stream has them
    markers = {k.split(b":")[1] for k in raw.scan_iter(match="pio:*:seen:*")}
    assert markers == {b"{sp_events}"}


def test_a_saves_acid_rows_commit_together(store: pio.Persistio, raw_pg: Any) -> None:
    # Given two acid intents, the second refusing one value (a constraint added by hand)
    store.save(SpTransfer(1, 10))
    raw_pg.execute("ALTER TABLE sp_ledger ADD CONSTRAINT small CHECK (amount < 1000)")
    raw_pg.commit()

    # When a save whose ledger row is refused is made
    with pytest.raises(pio.ValidationError, match="sp_ledger"):
        store.save(SpTransfer(2, 5000))

    # Then neither of its rows exists: one transaction; the next save writes both
    assert store.save(SpTransfer(3, 5)).done == ("sp_accounts", "sp_ledger")
    rows = raw_pg.execute("SELECT id FROM sp_accounts UNION ALL SELECT id FROM sp_ledger")
    assert sorted(r[0] for r in rows) == [1, 1, 3, 3]


def test_one_bad_save_never_fails_the_saves_grouped_with_it(
    store: pio.Persistio, raw_pg: Any
) -> None:
    # Given 12 threads saving together, round after round, one of them with a value PostgreSQL
    # refuses (a NUL character in text)
    rounds, threads = 15, 12
    errors: dict[int, BaseException] = {}
    bad = {r * threads + 5 for r in range(rounds)}

    def save(n: int, start: threading.Barrier) -> None:
        start.wait()
        try:
            store.save(SpTransfer(n, n, "nul\x00" if n in bad else "ok"))
        except pio.PersistioError as exc:
            errors[n] = exc

    for r in range(rounds):
        start = threading.Barrier(threads)
        group = [
            threading.Thread(target=save, args=(r * threads + i, start)) for i in range(threads)
        ]
        for t in group:
            t.start()
        for t in group:
            t.join(30)

    # Then exactly the bad saves raised, each a ValidationError naming what was refused
    assert set(errors) == bad
    assert all(isinstance(e, pio.ValidationError) for e in errors.values())
    # And every other save is committed, in both tables
    stored = {r[0] for r in raw_pg.execute("SELECT id FROM sp_accounts")}
    assert stored == set(range(rounds * threads)) - bad
    # And saves did share round trips (a refused group is re-sent save by save)
    group = store.status()["group_commit"]["acid"]
    assert group["largest"] > 1, group


def test_concurrent_saves_share_redis_round_trips(store: pio.Persistio, redis_db: str) -> None:
    # Given 16 threads, each saving 30 objects
    def saves(k: int) -> None:
        for n in range(30):
            store.save(SpEvent(1000 + k * 100 + n, k, "t"))

    workers = [threading.Thread(target=saves, args=(k,)) for k in range(16)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)

    # Then all 480 saves landed, through fewer calls than saves
    raw = redis.Redis.from_url(redis_db)
    assert raw.xlen("pio:{sp_events}") == 480
    group = store.status()["group_commit"]["transitory/volatile"]
    assert group["saves"] == 480
    assert group["flushes"] < 480, group


def test_persistio_keys_other_than_streams_all_expire(store: pio.Persistio, redis_db: str) -> None:
    # Given saves of a model with a consumer-visible stream, volatile values and deferred tasks,
    # consumed and drained
    store.consumer("sp_events")(lambda event: None)
    for n in range(2000, 2050):
        store.save(SpEvent(n, 3, "k"))
    store.drain(timeout=30)

    # Then every key persistio left in Redis is a stream (data, bounded by its limits) or
    # expires: dedup markers, failure times, volatile values
    raw = redis.Redis.from_url(redis_db)
    kinds = {}
    for key in raw.scan_iter(match="pio:*"):
        kind = raw.type(key)
        kinds[key] = kind
        if kind != b"stream":
            assert raw.pttl(key) > 0, key
    assert b"stream" in kinds.values()
    assert b"hash" in kinds.values()
