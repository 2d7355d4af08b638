"""Events and hooks through a real outage: Redis stops, writes spool, Redis returns, the spool
drains; every state change reaches store.on() hooks and the persistio.events log."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis

import persistio as pio

from .conftest import PrivateRedis


@pio.persist(pio.Volatile("event_cache", key=("id",), ttl=timedelta(minutes=5), on_outage="buffer"))
class Cached(msgspec.Struct, frozen=True):
    id: int
    note: str


def test_an_outage_and_its_recovery_are_events(
    private_redis: PrivateRedis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "persistio.events")
    with pio.Persistio(
        transitory=private_redis.url,
        volatile=private_redis.url,
        data_dir=tmp_path,
        realtime_deadline=0.5,
        breaker_reset=0.2,
    ) as store:
        store.setup()
        seen: list[tuple[str, dict[str, Any]]] = []

        def hook(event: str, fields: Mapping[str, Any]) -> None:
            seen.append((event, dict(fields)))

        store.on("*", hook)
        assert "event_cache" in store.save(Cached(0, "before")).done

        # When Redis stops and saves go on: they are buffered in the spool
        private_redis.stop()
        receipts = [store.save(Cached(n, "during")) for n in range(1, 6)]
        assert all("event_cache" in r.buffered for r in receipts)

        # And Redis comes back: the spool replays and drains
        private_redis.start()
        deadline = time.monotonic() + 30
        while "spool_drained" not in [e for e, _ in seen] and time.monotonic() < deadline:
            time.sleep(0.1)

        # Then the hooks saw the outage and the recovery, in order
        names = [e for e, _ in seen]
        for expected in ("circuit_opened", "spool_started", "replay_done", "spool_drained"):
            assert expected in names, names
        assert names.index("circuit_opened") < names.index("spool_drained")
        assert names.index("spool_started") < names.index("replay_done")
        assert "circuit_closed" in names[names.index("circuit_opened") :], names
        opened = dict(seen)["circuit_opened"]
        assert opened["tier"] in {"transitory", "volatile"}
        replayed = sum(f["replayed"] for e, f in seen if e == "replay_done")
        assert replayed == 5

        # And each is one log record under persistio.events with the event as a field
        logged = [r.__dict__["event"] for r in caplog.records if r.name == "persistio.events"]
        assert logged == names
        assert store.status()["hooks"]["errors"] == 0

    # And the replayed values are in Redis
    raw = redis.Redis.from_url(private_redis.url)
    try:
        assert len(raw.keys("pio:v:event_cache:*")) == 6
    finally:
        raw.close()
