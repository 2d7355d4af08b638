"""One Redis server as a backend: the transitory streams and the volatile values it holds.

When the transitory and volatile URLs name the same server, one ``RedisStore`` serves both
tiers, so everything a save sends to that Redis — its stream entries, its volatile values and its
deferred tasks — is one script call: one round trip, applied atomically.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.typing import EncodableT
from redis.utils import HIREDIS_AVAILABLE

from persistio.backends.base import Append, Delivery, Op, Options, StreamSpec
from persistio.backends.redis.cache import RedisCache
from persistio.backends.redis.client import open_client, script, unavailable_on_outage
from persistio.backends.redis.scripts import WRITE_SCRIPT
from persistio.backends.redis.streams import RedisStreams
from persistio.backends.redis.writes import ScriptWrites, check_replicas, trims_of, wait_ms
from persistio.config.urls import masked

if HIREDIS_AVAILABLE:
    import hiredis


class RedisStore(ScriptWrites, RedisStreams, RedisCache):
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
        self._request_timeout = options.request_timeout
        self._window_ms = max(1, round(options.dedup_window_seconds * 1000))
        self._write = script(WRITE_SCRIPT)
        self._stream_scripts()
        self._keys: dict[str, str] = {}  # stream name -> key, intent -> volatile key prefix
        self._replicas_wanted = 0  # the most replicas an append has asked for (warnings())
        # entries trimmed from streams by max_len / max_age, per stream (this process's count)
        self.trimmed: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r})"

    def _redis(self) -> redis.Redis:
        return self._client

    def write(self, ops: Sequence[Op], deadline: float | None = None) -> list[bool]:
        """Every op in one script call (a pipeline of calls past WRITE_CHUNK ops); then, when an
        append asks for replicas, WAIT for them on the same connection."""
        if not ops:
            return []
        trims = trims_of(ops)
        calls = self._calls(ops, trims, repr(time.time()))
        replicas = max(c.replicas for c in calls)
        tier = "transitory" if isinstance(ops[0], Append) else "volatile"
        with unavailable_on_outage(tier, self._where):
            if len(calls) == 1 and not replicas:
                replies = [self._evalsha(calls[0].keys, calls[0].args)]
            else:
                pipe = self._client.pipeline(transaction=False)
                for call in calls:
                    self._write(keys=call.keys, args=call.args, client=pipe)
                if replicas:
                    self._replicas_wanted = max(self._replicas_wanted, replicas)
                    waited = wait_ms(deadline, self._request_timeout)
                    pipe.wait(replicas, waited)
                replies = pipe.execute()
                if replicas:
                    check_replicas(replies.pop(), replicas, waited, self._where)
        answers = [int(r) for reply in replies for r in reply]
        if trims:
            self._count_trims(trims, answers[len(ops) :])
        return [n == 1 for n in answers[: len(ops)]]

    def _evalsha(self, keys: list[str], args: list[EncodableT]) -> Any:
        """One EVALSHA on a pooled connection, packed by hiredis in one C call.

        The redis-py command layers cost more than the round trip at this size; a stale pooled
        connection (the server restarted) is retried once on a fresh one, which is safe: a
        deduplicated append or a volatile write applied twice changes nothing, and a task
        queue entry applied twice only repeats a last-write-wins write.
        """
        if not HIREDIS_AVAILABLE:
            return self._write(keys=keys, args=args, client=self._client)
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
        return self._write(keys=keys, args=args, client=self._client)  # pragma: no cover

    def warnings(self) -> list[str]:
        """Appends ask for more replicas than the server has: their saves would buffer."""
        if not self._replicas_wanted:
            return []
        with unavailable_on_outage(self._tier, self._where):
            info: Any = self._client.info("replication")
        found = int(info.get("connected_slaves", 0))
        if found >= self._replicas_wanted:
            return []
        return [
            f"{self._tier} backend {self._where}: appends ask for {self._replicas_wanted} "
            f"replica(s) and the server has {found} connected: those saves are buffered"
        ]

    def ping(self) -> None:
        with unavailable_on_outage(self._tier, self._where):
            self._client.ping()

    def close(self) -> None:
        self._client.close()
        self._client.connection_pool.disconnect()


def _packed(sha: str, keys: list[str], args: list[EncodableT]) -> bytes:
    command: tuple[Any, ...] = ("EVALSHA", sha, len(keys), *keys, *args)
    packed: bytes = hiredis.pack_command(command)
    return packed


def from_url(url: str, options: Options, setting: str) -> RedisStore:
    """The transitory tier's factory in ``persistio.tiers.registry.REGISTRY`` (``redis://``)."""
    return RedisStore(url, options, setting)


def volatile_from_url(url: str, options: Options, setting: str) -> RedisStore:
    """The volatile tier's factory in ``persistio.tiers.registry.REGISTRY`` (``redis://``)."""
    return RedisStore(url, options, setting, tier="volatile")


__all__ = ["Delivery", "RedisStore", "StreamSpec", "from_url", "volatile_from_url"]
