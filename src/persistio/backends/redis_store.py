"""One Redis server as a backend: the transitory streams and the volatile values it holds.

When the transitory and volatile URLs name the same server, one ``RedisStore`` serves both
tiers, so everything a save sends to that Redis — its stream entries, its volatile values and its
deferred tasks — is one script call: one round trip, applied atomically.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.typing import EncodableT
from redis.utils import HIREDIS_AVAILABLE

from ..urls import masked
from .base import Append, Delivery, Op, Options, Put, StreamSpec, refuse
from .redis_cache import RedisCache, volatile_key
from .redis_client import open_client, unavailable_on_outage
from .redis_scripts import WRITE_SCRIPT
from .redis_streams import RedisStreams, stream_key

if HIREDIS_AVAILABLE:
    import hiredis

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
        self._keys: dict[str, str] = {}  # stream name -> key, intent -> volatile key prefix
        # entries trimmed from streams by max_len / max_age, per stream (this process's count)
        self.trimmed: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r})"

    def write(self, ops: Sequence[Op], deadline: float | None = None) -> list[bool]:
        """Every op in one script call (a pipeline of calls past WRITE_CHUNK ops)."""
        if not ops:
            return []
        now = repr(time.time())
        trims = _trims(ops)
        chunks: list[list[Op | Trim]] = [
            list(ops[i : i + WRITE_CHUNK]) for i in range(0, len(ops), WRITE_CHUNK)
        ]
        chunks[-1] += trims  # trims go last: after the appends that may have grown the stream
        calls = [self._call(chunk, now) for chunk in chunks]
        tier = "transitory" if isinstance(ops[0], Append) else "volatile"
        with unavailable_on_outage(tier, self._where):
            if len(calls) == 1:
                keys, args = calls[0]
                replies = [self._evalsha(keys, args)]
            else:
                pipe = self._client.pipeline(transaction=False)
                for keys, args in calls:
                    self._write(keys=keys, args=args, client=pipe)
                replies = pipe.execute()
        answers = [int(r) for reply in replies for r in reply]
        if trims:
            for trim, n in zip(trims, answers[len(ops) :], strict=True):
                if n:
                    name = trim.stream.name
                    self.trimmed[name] = self.trimmed.get(name, 0) + n
        return [n == 1 for n in answers[: len(ops)]]

    def _evalsha(self, keys: list[str], args: list[EncodableT]) -> Any:
        """One EVALSHA on a pooled connection, packed by hiredis in one C call.

        The redis-py command layers cost more than the round trip at this size; a stale pooled
        connection (the server restarted) is retried once on a fresh one, which is safe: a
        deduplicated append or a volatile write applied twice changes nothing, and a task
        queue entry applied twice only repeats a last-write-wins write.
        """
        if not HIREDIS_AVAILABLE:
            return self._write(keys=keys, args=args)
        command = _packed(self._write.sha, keys, args)
        pool = self._client.connection_pool
        for attempt in (1, 2):
            conn: Any = pool.get_connection()  # redis-py's connection methods are untyped
            try:
                conn.send_packed_command([command])
                reply = conn.read_response()
            except RedisConnectionError:
                conn.disconnect()
                if attempt == 2:
                    raise
                continue
            except NoScriptError:  # the server restarted and lost its script cache
                self._write.sha = str(self._client.script_load(WRITE_SCRIPT))
                command = _packed(self._write.sha, keys, args)
                continue
            except BaseException:
                conn.disconnect()  # a timeout leaves a reply in flight: never reuse it
                raise
            finally:
                pool.release(conn)
            return reply
        return self._write(keys=keys, args=args)  # pragma: no cover - loop always returns

    def _call(self, ops: Sequence[Op | Trim], now: str) -> tuple[list[str], list[EncodableT]]:
        keys: list[str] = []
        args: list[EncodableT] = [self._window_ms, now]
        known = self._keys
        for op in ops:
            if type(op) is Append:
                name = op.stream.name
                key = known.get(name) or known.setdefault(name, stream_key(name))
                if op.dedupe:
                    keys += (key, f"{key}:seen:{op.item_id}")
                    args += ("a", op.item_id, op.payload)
                else:
                    keys.append(key)
                    args += ("q", op.item_id, op.payload)
            elif type(op) is Trim:
                keys.append(stream_key(op.stream.name))
                args += ("t", op.max_len, op.min_id)
            elif type(op) is Put:
                slot = f"v:{op.intent}"
                prefix = known.get(slot) or known.setdefault(slot, volatile_key(op.intent, "")[:-2])
                keys.append(f"{prefix}{{{op.key}}}")
                args += ("v", op.ts, op.expires_at_us // 1000, op.payload, op.wid)
            else:
                raise refuse(self, op)
        return keys, args

    def ping(self) -> None:
        with unavailable_on_outage(self._tier, self._where):
            self._client.ping()

    def close(self) -> None:
        self._client.close()
        self._client.connection_pool.disconnect()


class Trim(NamedTuple):
    """Keep a stream within its max_len / max_age (sent after the batch's appends)."""

    stream: StreamSpec
    max_len: int | str  # '' when unbounded
    min_id: int | str  # the oldest entry id kept, in ms; '' when unbounded


def _trims(ops: Sequence[Op]) -> list[Trim]:
    """One trim per stream that the batch appends to and whose spec bounds it."""
    seen: dict[str, Trim] = {}
    now_ms = time.time() * 1000
    for op in ops:
        if type(op) is Append and op.stream.name not in seen:
            spec = op.stream
            if spec.max_len is None and spec.max_age_seconds is None:
                continue
            min_id: int | str = ""
            if spec.max_age_seconds is not None:
                min_id = max(0, int(now_ms - spec.max_age_seconds * 1000))
            seen[spec.name] = Trim(spec, "" if spec.max_len is None else spec.max_len, min_id)
    return list(seen.values())


def _packed(sha: str, keys: list[str], args: list[EncodableT]) -> bytes:
    command: tuple[Any, ...] = ("EVALSHA", sha, len(keys), *keys, *args)
    packed: bytes = hiredis.pack_command(command)
    return packed


def from_url(url: str, options: Options, setting: str) -> RedisStore:
    """The transitory tier's factory in ``persistio.config.REGISTRY`` (``redis://``)."""
    return RedisStore(url, options, setting)


def volatile_from_url(url: str, options: Options, setting: str) -> RedisStore:
    """The volatile tier's factory in ``persistio.config.REGISTRY`` (``redis://``)."""
    return RedisStore(url, options, setting, tier="volatile")


__all__ = ["Delivery", "RedisStore", "StreamSpec", "from_url", "volatile_from_url"]
