"""Volatile tier on Redis: one hash per key, last write wins, absolute expiry.

A value lives at ``pio:v:<intent>:{<key>}`` as a hash with fields ``ts`` (the write timestamp in
microseconds) and ``p`` (the msgpack payload), readable with ``redis-cli HGETALL``. The braces
are the Redis Cluster hash tag. Every write goes through the write script (``RedisStore.write``),
which compares write timestamps and sets the absolute expiry, so a replayed or redelivered write
can never overwrite newer data or resurrect an expired value (see ``MemoryVolatile``, whose
semantics this matches).
"""

from __future__ import annotations

from collections.abc import Sequence

import redis
from redis.cluster import RedisCluster

from persistio.backends.redis.client import INTENT_NAME, unavailable_on_outage


def volatile_key(intent: str, key: str) -> str:
    """``pio:v:<intent>:{<key>}``; ``key`` is ``key_text`` output, so it holds no braces."""
    if not INTENT_NAME.fullmatch(intent):
        raise ValueError(f"not an intent name: {intent!r}")
    return f"pio:v:{intent}:{{{key}}}"


class RedisCache:
    """The volatile half of ``RedisStore``: reads (writes go through ``RedisStore.write``)."""

    _where: str

    def _redis(self) -> redis.Redis | RedisCluster:
        raise NotImplementedError

    def get(self, intent: str, key: str) -> bytes | None:
        """The stored payload, or None when absent or expired."""
        with unavailable_on_outage("volatile", self._where):
            value = self._redis().hget(volatile_key(intent, key), "p")
        assert value is None or isinstance(value, bytes)  # decode_responses=False
        return value

    def get_stamped(self, intent: str, key: str) -> tuple[bytes, int] | None:
        """The stored payload and its write timestamp, or None when absent or expired."""
        with unavailable_on_outage("volatile", self._where):
            value, ts = self._redis().hmget(volatile_key(intent, key), ["p", "ts"])
        if value is None:
            return None
        assert isinstance(value, bytes)  # decode_responses=False
        assert isinstance(ts, bytes)
        return value, int(ts)

    def get_many_stamped(self, intent: str, keys: Sequence[str]) -> list[tuple[bytes, int] | None]:
        """``get_stamped`` of every key through one pipeline (one round trip per node)."""
        if not keys:
            return []
        with unavailable_on_outage("volatile", self._where):
            pipe = self._redis().pipeline(transaction=False)
            for key in keys:
                pipe.hmget(volatile_key(intent, key), ["p", "ts"])
            replies = pipe.execute()
        found: list[tuple[bytes, int] | None] = []
        for value, ts in replies:
            found.append(None if value is None else (bytes(value), int(ts)))
        return found
