"""One Redis server as a backend: the transitory streams and the volatile values it holds.

When the transitory and volatile URLs name the same server, one ``RedisStore`` serves both
tiers, so everything a save sends to that Redis — its stream entries, its volatile values and its
deferred tasks — is one script call: one round trip, applied atomically.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import ClassVar

from redis.typing import EncodableT

from ..urls import masked
from .base import Append, Delivery, Op, Options, Put, StreamSpec, refuse
from .redis_cache import RedisCache, volatile_key
from .redis_client import open_client, unavailable_on_outage
from .redis_scripts import WRITE_SCRIPT
from .redis_streams import RedisStreams, stream_key

# Ops per script call: bounds one call's run time on the server (a script blocks the server
# while it runs) and the request's size; a bigger batch is split into calls of one pipeline.
WRITE_CHUNK = 1000


class RedisStore(RedisStreams, RedisCache):
    """Transitory (Redis Streams + consumer groups) and volatile (hashes with expiry) on one server.

    Args:
        url: ``redis://[user:password@]host:port/db`` or ``rediss://...``.
        options: Pool size, timeouts (every call is bounded by ``request_timeout``) and the
            dedup window of the entries consumers see.
        setting: Names the setting in a ``ConfigError`` for a malformed URL.
    """

    tiers: ClassVar[frozenset[str]] = frozenset({"transitory", "volatile"})
    bounded: ClassVar[bool] = True  # socket timeouts bound every call
    concurrent: ClassVar[bool] = False

    def __init__(self, url: str, options: Options, setting: str, tier: str = "transitory") -> None:
        self._tier = tier  # names the tier in errors that are not about one op's kind
        self._where = masked(url)
        self._client = open_client(url, options, setting)
        self._window_ms = max(1, round(options.dedup_window_seconds * 1000))
        self._write = self._client.register_script(WRITE_SCRIPT)
        self._stream_scripts()

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r})"

    def write(self, ops: Sequence[Op], deadline: float | None = None) -> list[bool]:
        """Every op in one script call (a pipeline of calls past WRITE_CHUNK ops)."""
        if not ops:
            return []
        now = repr(time.time())
        calls = [self._call(ops[i : i + WRITE_CHUNK], now) for i in range(0, len(ops), WRITE_CHUNK)]
        tier = "transitory" if isinstance(ops[0], Append) else "volatile"
        with unavailable_on_outage(tier, self._where):
            if len(calls) == 1:
                replies = [self._write(keys=calls[0][0], args=calls[0][1])]
            else:
                pipe = self._client.pipeline(transaction=False)
                for keys, args in calls:
                    self._write(keys=keys, args=args, client=pipe)
                replies = pipe.execute()
        return [int(r) == 1 for reply in replies for r in reply]

    def _call(self, ops: Sequence[Op], now: str) -> tuple[list[str], list[EncodableT]]:
        keys: list[str] = []
        args: list[EncodableT] = [self._window_ms, now]
        for op in ops:
            if type(op) is Append:
                key = stream_key(op.stream.name)
                if op.dedupe:
                    keys += (key, f"{key}:seen:{op.item_id}")
                    args += ("a", op.item_id, op.payload)
                else:
                    keys.append(key)
                    args += ("q", op.item_id, op.payload)
            elif type(op) is Put:
                keys.append(volatile_key(op.intent, op.key))
                args += ("v", op.ts, op.expires_at_us // 1000, op.payload)
            else:
                raise refuse(self, op)
        return keys, args

    def ping(self) -> None:
        with unavailable_on_outage(self._tier, self._where):
            self._client.ping()

    def close(self) -> None:
        self._client.close()
        self._client.connection_pool.disconnect()


def from_url(url: str, options: Options, setting: str) -> RedisStore:
    """The transitory tier's factory in ``persistio.config.REGISTRY`` (``redis://``)."""
    return RedisStore(url, options, setting)


def volatile_from_url(url: str, options: Options, setting: str) -> RedisStore:
    """The volatile tier's factory in ``persistio.config.REGISTRY`` (``redis://``)."""
    return RedisStore(url, options, setting, tier="volatile")


__all__ = ["Delivery", "RedisStore", "StreamSpec", "from_url", "volatile_from_url"]
