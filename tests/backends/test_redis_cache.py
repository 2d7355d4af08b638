"""The volatile tier on Redis: what lands in Redis, read back with a raw client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from persistio.backends.base import Options, Put, key_text
from persistio.backends.redis.server import RedisStore as RedisCache
from persistio.backends.redis.server import volatile_from_url as from_url
from persistio.errors import BackendUnavailable, ConfigError

HOUR_US = 3_600_000_000


@pytest.fixture
def cache(db_url: str, tmp_path: Path, raw: redis.Redis) -> Iterator[RedisCache]:
    backend = from_url(db_url, Options(tmp_path, connect_timeout=0.5), "volatile")
    try:
        yield backend
    finally:
        backend.close()


def now_us() -> int:
    return time.time_ns() // 1000


def entry(ts: int, payload: bytes, *, key: str = "7:1", ttl_us: int = HOUR_US) -> Put:
    return Put("here_now", key, ts, ts + ttl_us, payload)


def put(backend: RedisCache, intent: str, entries: list[Put]) -> list[bool]:
    return backend.write([e._replace(intent=intent) for e in entries])


KEY = "pio:v:here_now:{7:1}"


def test_put_writes_a_hash_under_a_hash_tagged_key(cache: RedisCache, raw: redis.Redis) -> None:
    # Given an entry for venue 7, user 1
    ts = now_us()

    # When it is put
    put(cache, "here_now", [entry(ts, b"v1", key=key_text([7, 1]))])

    # Then Redis holds a hash with the write timestamp and the payload, and get() reads it
    assert raw.keys("*") == [KEY.encode()]
    assert raw.hgetall(KEY) == {b"ts": str(ts).encode(), b"p": b"v1", b"w": b""}
    assert cache.get("here_now", "7:1") == b"v1"
    assert cache.get("here_now", "7:2") is None


def test_absolute_expiry(cache: RedisCache, raw: redis.Redis) -> None:
    # Given an entry written 10 minutes ago (a late replay) with a one-hour TTL
    ts = now_us() - 600_000_000

    # When it is put now
    put(cache, "here_now", [entry(ts, b"v1")])

    # Then it expires at write time + TTL (in 50 minutes), not an hour from now
    assert raw.pexpiretime(KEY) == (ts + HOUR_US) // 1000
    assert 49 * 60_000 < raw.pttl(KEY) <= 50 * 60_000


def test_older_write_never_overwrites_newer(cache: RedisCache, raw: redis.Redis) -> None:
    # Given a stored value
    ts = now_us()
    put(cache, "here_now", [entry(ts, b"new")])

    # When an older write and a replay of the same write arrive
    older = put(cache, "here_now", [entry(ts - 1, b"older", ttl_us=2 * HOUR_US)])
    same = put(cache, "here_now", [entry(ts, b"same-ts", ttl_us=2 * HOUR_US)])

    # Then both are answered as superseded, and the stored value and its expiry are unchanged
    assert older == same == [False]
    assert raw.hgetall(KEY) == {b"ts": str(ts).encode(), b"p": b"new", b"w": b""}
    assert raw.pexpiretime(KEY) == (ts + HOUR_US) // 1000


def test_newer_write_wins_and_moves_the_expiry(cache: RedisCache, raw: redis.Redis) -> None:
    # Given a stored value
    ts = now_us()
    put(cache, "here_now", [entry(ts, b"old")])

    # When a newer write arrives, in a batch that also holds an older one for the same key
    assert put(cache, "here_now", [entry(ts + 5, b"newest"), entry(ts + 2, b"stale")]) == [
        True,
        False,
    ]

    # Then the newest value is stored, expiring at its own write time + TTL
    assert raw.hgetall(KEY) == {b"ts": str(ts + 5).encode(), b"p": b"newest", b"w": b""}
    assert raw.pexpiretime(KEY) == (ts + 5 + HOUR_US) // 1000


def test_late_replay_of_an_expired_write_is_not_resurrected(
    cache: RedisCache, raw: redis.Redis
) -> None:
    # Given a write whose TTL ran out before it was replayed
    ts = now_us() - 2 * HOUR_US

    # When it is put
    put(cache, "here_now", [entry(ts, b"expired")])

    # Then nothing was written
    assert raw.exists(KEY) == 0
    assert cache.get("here_now", "7:1") is None


def test_expired_replay_leaves_a_stored_value_alone(cache: RedisCache, raw: redis.Redis) -> None:
    # Given a stored value with a long TTL
    ts = now_us() - 10_000_000
    put(cache, "here_now", [entry(ts, b"kept", ttl_us=5 * HOUR_US)])

    # When a newer write with a short, already expired TTL is replayed late
    put(cache, "here_now", [entry(ts + 1, b"gone", ttl_us=1_000_000)])

    # Then the stored value is untouched (like MemoryVolatile), not deleted by a past expiry
    assert raw.hgetall(KEY) == {b"ts": str(ts).encode(), b"p": b"kept", b"w": b""}


def test_value_disappears_at_its_expiry(cache: RedisCache) -> None:
    # Given a value that expires 300 ms after it was written
    put(cache, "here_now", [entry(now_us(), b"brief", ttl_us=300_000)])
    assert cache.get("here_now", "7:1") == b"brief"

    # When its expiry passes
    time.sleep(0.35)

    # Then it is gone
    assert cache.get("here_now", "7:1") is None


def test_large_batch(cache: RedisCache, raw: redis.Redis) -> None:
    # Given 1200 entries for distinct keys (several pipelined chunks)
    ts = now_us()
    entries = [entry(ts, str(i).encode(), key=str(i)) for i in range(1200)]

    # When they are put
    put(cache, "counts", entries)

    # Then every one is stored under its own hash-tagged key, with its expiry
    assert raw.dbsize() == 1200
    assert raw.hget("pio:v:counts:{1199}", "p") == b"1199"
    assert raw.pexpiretime("pio:v:counts:{0}") == (ts + HOUR_US) // 1000


def test_binary_payload_round_trips(cache: RedisCache) -> None:
    # Given a payload with every byte value
    payload = bytes(range(256))

    # When it is put and read
    put(cache, "here_now", [entry(now_us(), payload)])

    # Then it comes back unchanged
    assert cache.get("here_now", "7:1") == payload


def test_only_intent_names_become_key_names(cache: RedisCache) -> None:
    # Given names that would break the key layout, then they are refused before any write
    for bad in ("Here", "a}b", "x:y", ""):
        with pytest.raises(ValueError, match="not an intent name"):
            put(cache, bad, [entry(now_us(), b"v")])


def test_unreachable_server_raises_backend_unavailable(tmp_path: Path) -> None:
    # Given a URL where nothing listens, with a password
    options = Options(tmp_path, connect_timeout=0.2, request_timeout=0.2)
    backend = from_url("redis://user:s3cret@127.0.0.1:1/0", options, "volatile")

    # When any operation runs, then it raises BackendUnavailable for the tier, password hidden
    calls: list[Callable[[], object]] = [
        backend.ping,
        lambda: backend.get("here_now", "7:1"),
        lambda: put(backend, "here_now", [entry(now_us(), b"v")]),
        lambda: put(backend, "here_now", [entry(now_us(), b"v", key=str(i)) for i in range(3)]),
    ]
    started = time.monotonic()
    for call in calls:
        with pytest.raises(BackendUnavailable) as caught:
            call()
        assert caught.value.tier == "volatile"
        assert "s3cret" not in str(caught.value)
    assert time.monotonic() - started < 2
    backend.close()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:99999/0", "redis://:s3cret@/0", "redis:/x"])
def test_malformed_url_raises_config_error(url: str, tmp_path: Path) -> None:
    # When the backend is built from a malformed URL
    with pytest.raises(ConfigError) as caught:
        from_url(url, Options(tmp_path), "PERSISTIO_VOLATILE_URL")

    # Then the error names the setting and never shows the password
    assert "PERSISTIO_VOLATILE_URL" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_equal_timestamps_resolve_to_the_larger_write_id(
    cache: RedisCache, raw: redis.Redis
) -> None:
    # Given two writes with the same timestamp from two processes, the larger write id second
    ts = now_us()
    small = entry(ts, b"small")._replace(wid="01a20000-0000-7000-8000-000000000001")
    large = entry(ts, b"large")._replace(wid="01a20000-0000-7000-8000-000000000002")

    # When they arrive in either order, then the larger write id is what is stored
    assert put(cache, "here_now", [large]) == [True]
    assert put(cache, "here_now", [small]) == [False]
    assert raw.hget(KEY, "p") == b"large"
    raw.delete(KEY)
    assert put(cache, "here_now", [small, large]) == [True, True]
    assert raw.hget(KEY, "p") == b"large"
