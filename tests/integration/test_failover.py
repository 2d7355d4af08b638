"""Given transitory and volatile tiers with a fallback Redis, a primary outage loses nothing."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

import persistio as pio
from tests.integration.conftest import PrivateRedis
from tests.models import Checkin

FALLBACK_DB = 8


def test_writes_fail_over_and_workers_consume_from_both(
    private_redis: PrivateRedis, redis_url: str, tmp_path: Path
) -> None:
    fallback_url = f"{redis_url.rsplit('/', 1)[0]}/{FALLBACK_DB}"
    fallback = redis.Redis.from_url(fallback_url)
    fallback.flushdb()
    primary = redis.Redis.from_url(private_redis.url)
    urls = [private_redis.url, fallback_url]
    with pio.Persistio(
        transitory=urls, volatile=urls, data_dir=tmp_path, breaker_reset=0.2
    ) as store:
        store.setup()
        delivered: list[Checkin] = []
        store.consumer("notify_friends")(delivered.append)

        def checkin() -> Checkin:
            return Checkin(uuid.uuid4(), 77, 9, datetime.now(UTC))

        # Given one check-in saved while the primary is up: it lands on the primary
        before = checkin()
        assert "notify_friends" in store.save(before).done
        assert primary.xlen("pio:{notify_friends}") == 1

        # When the primary stops, saves go to the fallback (done, not buffered or dropped)
        private_redis.stop()
        during = [checkin() for _ in range(5)]
        receipts = [store.save(c) for c in during]
        assert all(sorted(r.done) == ["checkins", "here_now", "notify_friends"] for r in receipts)
        assert fallback.xlen("pio:{notify_friends}") == 5
        assert store.get(Checkin, "here_now", venue_id=9, user_id=77) == during[-1]

        # And a worker consumes what the fallback holds while the primary is down
        store.drain(timeout=30)
        assert delivered == during

        # When the primary is back, the item it kept is consumed and new writes return to it
        private_redis.start()
        primary = redis.Redis.from_url(private_redis.url)
        deadline = time.monotonic() + 10
        while len(delivered) < 6 and time.monotonic() < deadline:  # until its breaker probes
            store.drain(timeout=30)
            time.sleep(0.1)
        assert sorted(c.id.int for c in delivered) == sorted(c.id.int for c in [*during, before])
        _save_until_on_primary(store, checkin, primary)
        status: dict[str, Any] = store.status()
        assert status["backends"]["transitory"]["healthy"]
    fallback.close()
    primary.close()


def _save_until_on_primary(store: pio.Persistio, make: Any, primary: redis.Redis) -> None:
    # the primary's breaker lets a probe through after its cool-down; saves meanwhile still go
    # to the fallback, so keep saving until one lands on the primary again
    deadline = time.monotonic() + 10
    while primary.xlen("pio:{notify_friends}") == 0:
        assert time.monotonic() < deadline, "writes never returned to the primary"
        store.save(make())
        time.sleep(0.1)
