"""The Redis the tests use keeps what it is given, even across a restart."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
import redis

pytestmark = pytest.mark.services

SERVICES = Path(__file__).resolve().parents[2] / "scripts" / "services"


def _managed_redis_url() -> str | None:
    """The Redis URL scripts/services reports, if it runs one."""
    done = subprocess.run(
        ["bash", str(SERVICES), "env"], capture_output=True, text=True, check=False
    )
    for line in done.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        if name == "PERSISTIO_VOLATILE_URL":
            return value
    return None


def test_set_with_ttl_reads_back(raw_redis: redis.Redis) -> None:
    # Given a key written with a TTL
    key = f"persistio:harness:{uuid.uuid4().hex}"
    raw_redis.set(key, b"here", ex=60)
    try:
        # Then it reads back, with its TTL set
        assert raw_redis.get(key) == b"here"
        assert 0 < raw_redis.ttl(key) <= 60
    finally:
        raw_redis.delete(key)


def test_stream_entry_survives_a_restart(raw_redis: redis.Redis, redis_url: str) -> None:
    if _managed_redis_url() != redis_url:
        pytest.skip(f"{redis_url} is not run by scripts/services, which this test restarts")
    # Given a stream entry
    stream = f"persistio:harness:{uuid.uuid4().hex}"
    entry_id = raw_redis.xadd(stream, {"event": "checkin", "user": "42"})

    # When scripts/services stops Redis (SIGTERM) and starts it again on the same data
    subprocess.run(
        ["bash", str(SERVICES), "restart-redis"], check=True, timeout=120, env=os.environ.copy()
    )

    # Then a new connection finds the entry
    with redis.Redis.from_url(redis_url) as fresh:
        try:
            assert fresh.xrange(stream) == [(entry_id, {b"event": b"checkin", b"user": b"42"})]
        finally:
            fresh.delete(stream)
