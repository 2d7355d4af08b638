"""Volatile tier on Redis: one hash per key, last write wins, absolute expiry.

A value lives at ``pio:v:<intent>:{<key>}`` as a hash with fields ``ts`` (the write timestamp in
microseconds) and ``p`` (the msgpack payload), readable with ``redis-cli HGETALL``. The braces
are the Redis Cluster hash tag. Every write goes through one Lua script that compares write
timestamps and sets the absolute expiry, so a replayed or redelivered write can never overwrite
newer data or resurrect an expired value (see ``MemoryVolatile``, whose semantics this matches).

This module also holds what both Redis backends share: building the client from a URL and
mapping the driver's connection failures to ``BackendUnavailable``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    ClusterDownError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)
from redis.retry import Retry

from ..config import Options, masked
from ..errors import BackendUnavailable, ConfigError
from .base import VolatileEntry

# Intent names are validated when declared; re-checked here because they become key names.
INTENT_NAME = re.compile(r"[a-z][a-z0-9_]*")

# Driver errors that mean "the server cannot serve us right now": callers buffer, drop or fail
# by the intent's on_outage. BusyLoadingError, AuthenticationError and "Too many connections"
# are ConnectionError subclasses/instances; READONLY comes from a replica after a failover.
_OUTAGES: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    ClusterDownError,
    TryAgainError,
)
# Server replies that also mean a (temporary) outage rather than a bug: out of memory under
# noeviction, and writes refused because the last RDB save failed.
_OUTAGE_REPLIES = ("OOM ", "MISCONF ", "MASTERDOWN ", "LOADING ")

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


def open_client(url: str, options: Options, setting: str) -> redis.Redis:
    """A thread-safe client for ``url``; ConfigError (naming ``setting``) if it is malformed.

    No connection is made here: the first command connects, so a server that is down shows up as
    ``BackendUnavailable`` on use, not as a failure to build the store.
    """
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a non-numeric or out-of-range port
        if not parts.hostname:
            raise ValueError("no host")
        # redis-py silently falls back to db 0 for a path like /zero: refuse it instead
        if parts.path.strip("/") and not parts.path.strip("/").isdigit():
            raise ValueError(f"the path must be a database number, not {parts.path!r}")
        # A blocking pool makes threads wait for a free connection instead of failing with
        # "Too many connections" under a burst; the wait is bounded by the request timeout.
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=max(2, options.pool_size * 2),
            timeout=options.request_timeout,
            socket_timeout=options.request_timeout,
            socket_connect_timeout=options.connect_timeout,
            health_check_interval=30,
            decode_responses=False,
            # redis-py retries 10 times by default (seconds of backoff): an outage must reach
            # the caller fast so it can spool. One quick retry still rides over a connection
            # that went stale (e.g. a server restart). Timeouts are not retried: that would
            # double the wait on a hung server.
            retry=Retry(
                ExponentialBackoff(cap=0.05, base=0.01), 1, supported_errors=(RedisConnectionError,)
            ),
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{setting}: {masked(url)} is not a valid Redis URL ({exc})") from exc
    return redis.Redis(connection_pool=pool)


@contextmanager
def unavailable_on_outage(tier: str, where: str) -> Iterator[None]:
    """Re-raise the driver's connection failures as ``BackendUnavailable`` for ``tier``.

    ``where`` must already be masked: it goes into the message.
    """
    try:
        yield
    except _OUTAGES as exc:
        raise BackendUnavailable(
            f"{tier} backend {where} is unavailable: {type(exc).__name__}: {exc}", tier=tier
        ) from exc
    except ResponseError as exc:
        if not str(exc).startswith(_OUTAGE_REPLIES):
            raise
        raise BackendUnavailable(
            f"{tier} backend {where} refused the command: {exc}", tier=tier
        ) from exc


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
