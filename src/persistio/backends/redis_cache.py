"""Volatile tier on Redis: one hash per key, last write wins, absolute expiry.

A value lives at ``pio:v:<intent>:{<key>}`` as a hash with fields ``ts`` (the write timestamp in
microseconds) and ``p`` (the msgpack payload), readable with ``redis-cli HGETALL``. The braces
are the Redis Cluster hash tag. Every write goes through one Lua script that compares write
timestamps and sets the absolute expiry, so a replayed or redelivered write can never overwrite
newer data or resurrect an expired value (see ``MemoryVolatile``, whose semantics this matches).
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from ..config import Options, masked
from .base import VolatileEntry
from .redis_client import INTENT_NAME, open_client, unavailable_on_outage

# Writes only when the stored version is older, with the absolute expiry; returns 1 if written.
# KEYS[1] the hash; ARGV: ts (us), expire-at (ms since the epoch), payload.
# Timestamps (~1.8e15 us) are compared as Lua doubles: exact below 2^53 (until year ~2255).
PUT_SCRIPT = """
local expire_at = tonumber(ARGV[2])
local t = redis.call('TIME')
-- the server's clock decides, as it is the one that will expire the key
if expire_at <= tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) then
  return 0  -- written late (a replay) and already expired: never resurrect it
end
local stored = redis.call('HGET', KEYS[1], 'ts')
if stored and tonumber(stored) >= tonumber(ARGV[1]) then
  return 0  -- an older, or the same, write never wins
end
redis.call('HSET', KEYS[1], 'ts', ARGV[1], 'p', ARGV[3])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
"""

# Entries per pipeline round trip in put(): bounds the request and reply buffers.
PUT_CHUNK = 500


def volatile_key(intent: str, key: str) -> str:
    """``pio:v:<intent>:{<key>}``; ``key`` is ``key_text`` output, so it holds no braces."""
    if not INTENT_NAME.fullmatch(intent):
        raise ValueError(f"not an intent name: {intent!r}")
    return f"pio:v:{intent}:{{{key}}}"


class RedisCache:
    """Volatile backend on Redis: values expire at their absolute time; the newest write wins.

    Args:
        url: ``redis://[user:password@]host:port/db`` or ``rediss://...``.
        options: Pool size and timeouts.
        setting: Names the setting in a ``ConfigError`` for a malformed URL.
    """

    def __init__(self, url: str, options: Options, setting: str) -> None:
        self._where = masked(url)
        self._client = open_client(url, options, setting)
        self._put = self._client.register_script(PUT_SCRIPT)

    def __repr__(self) -> str:
        return f"RedisCache({self._where!r})"

    def put(self, intent: str, entries: Sequence[VolatileEntry]) -> None:
        """Write each entry unless a newer one is stored or its absolute expiry has passed."""
        if not entries:
            return
        keys = [volatile_key(intent, e.key) for e in entries]
        with unavailable_on_outage("volatile", self._where):
            if len(entries) == 1:
                self._call_put(self._client, keys[0], entries[0])
                return
            # One EVALSHA per entry (each key is its own hash slot in a cluster), pipelined.
            for start in range(0, len(entries), PUT_CHUNK):
                pipe = self._client.pipeline(transaction=False)
                for key, entry in zip(
                    keys[start : start + PUT_CHUNK],
                    entries[start : start + PUT_CHUNK],
                    strict=True,
                ):
                    self._call_put(pipe, key, entry)
                pipe.execute()

    def _call_put(self, client: redis.Redis, key: str, entry: VolatileEntry) -> None:
        self._put(
            keys=[key], args=[entry.ts, entry.expires_at_us // 1000, entry.payload], client=client
        )

    def get(self, intent: str, key: str) -> bytes | None:
        """The stored payload, or None when absent or expired."""
        with unavailable_on_outage("volatile", self._where):
            value = self._client.hget(volatile_key(intent, key), "p")
        assert value is None or isinstance(value, bytes)  # decode_responses=False
        return value

    def ping(self) -> None:
        with unavailable_on_outage("volatile", self._where):
            self._client.ping()

    def close(self) -> None:
        self._client.close()
        self._client.connection_pool.disconnect()


def from_url(url: str, options: Options, setting: str) -> RedisCache:
    """The factory named in ``persistio.config.REGISTRY`` for ``redis://`` and ``rediss://``."""
    return RedisCache(url, options, setting)
