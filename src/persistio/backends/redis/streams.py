"""Transitory tier on Redis Streams with one consumer group, ``persistio``, per stream.

The same semantics as ``SQLiteQueue``, mapped onto stream commands:

- ``pio:{<name>}`` is the stream, ``pio:{<name>}:dead`` its dead letters and
  ``pio:{<name>}:seen:<item id>`` the dedup markers; the ``{<name>}`` hash tag keeps all of a
  stream's keys in one Redis Cluster slot, which the Lua scripts and MULTI blocks rely on.
- append (``RedisStore.write``): fields ``d`` item id, ``p`` payload, ``t`` enqueue time. An
  entry a consumer sees is added only when its marker is new (``SET NX PX <window>``); a task
  queue entry is added as is (its effect is a last-write-wins write: a duplicate is harmless).
  The group is created by the first claim (at id 0) or by ``setup``.
- claim: a Lua script dead-letters entries past ``max_age`` (their id is their server-side
  enqueue time, so they are a prefix of the stream), takes entries idle for longer than the
  visibility timeout from the pending list (``XAUTOCLAIM``: redelivery), then new ones
  (``XREADGROUP >``). The delivery count is the group's own counter (``XPENDING``).
- ack: ``XACK`` + ``XDEL`` in one script, so the stream holds exactly the entries not yet
  acknowledged.
- release: the entry stays pending; ``XCLAIM ... IDLE <visibility - delay> JUSTID`` backdates
  its last delivery so that it becomes idle enough for ``XAUTOCLAIM`` after ``delay`` seconds,
  without counting a delivery. Redis cannot make an entry idle for less than zero, so a delay
  longer than the visibility timeout is cut to it: the entry is claimable again after
  ``min(delay, visibility)``, as it would be if its consumer had died.

Needs Redis >= 6.2 (XAUTOCLAIM); run it with ``maxmemory-policy noeviction``, as an evicted
stream loses its entries and its group.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import redis
from redis.cluster import RedisCluster
from redis.exceptions import ResponseError
from redis.typing import EncodableT

from persistio.backends.base import GROUP_MARK, DeadEntry, Delivery, StreamSpec, StreamStats
from persistio.backends.redis.client import script, unavailable_on_outage
from persistio.backends.redis.scripts import (
    ACK_SCRIPT,
    ADVANCE_SCRIPT,
    CLAIM_SCRIPT,
    DEAD_SCRIPT,
    PRUNE_SCRIPT,
    REDRIVE_SCRIPT,
    RELEASE_SCRIPT,
    STATS_SCRIPT,
)

GROUP = "persistio"
EXPIRED = "expired: older than max_age"
# an intent name, or an internal task queue (tasks.high, tasks.normal, tasks.low), either one
# possibly a partition of it (notify.3, tasks.high.1.17: see persistio.model.partitions)
# and a consumer group's copy of one (notify~email, notify.3~email)
STREAM_NAME = re.compile(
    r"(?:[a-z][a-z0-9_]*|(?:[a-z][a-z0-9_]*\.)?tasks\.[a-z]+)(?:\.[0-9]{1,3}(?:\.[0-9]{1,6})?)?"
    r"(?:~[a-z][a-z0-9_]*)?"
)
EXPIRE_BATCH = 500  # expired entries dead-lettered per claim, bounding that script's run time
PENDING_ROUNDS = 10  # XAUTOCLAIM calls per claim; each scans up to 10 x COUNT pending entries
ACK_CHUNK = 1000  # ids per ack call (Lua's unpack() takes a few thousand at most)


def stream_key(name: str) -> str:
    """``pio:{<name>}``, or ``pio:{<name>}:g:<consumer>`` for a consumer group's copy of a
    stream (in the stream's slot, so one script writes both); only an intent name or an
    internal queue name is accepted."""
    if not STREAM_NAME.fullmatch(name):
        raise ValueError(f"not a stream name: {name!r}")
    stream, _, group = name.partition(GROUP_MARK)
    return f"pio:{{{stream}}}:g:{group}" if group else f"pio:{{{stream}}}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id_seconds(entry_id: Any) -> float:
    return int(_text(entry_id).partition("-")[0]) / 1000


class RedisStreams:
    """The transitory half of ``RedisStore``: at-least-once delivery through a consumer group.

    Any number of processes may share a stream: the group hands each entry to one consumer,
    and an entry left unacknowledged past the visibility timeout is handed out again.
    """

    _where: str

    def _redis(self) -> redis.Redis | RedisCluster:
        """The client: one server's, or a cluster's (which routes each call by its keys)."""
        raise NotImplementedError

    def _stream_scripts(self) -> None:
        self._claim = script(CLAIM_SCRIPT)
        self._release = script(RELEASE_SCRIPT)
        self._dead = script(DEAD_SCRIPT)
        self._redrive = script(REDRIVE_SCRIPT)
        self._ack = script(ACK_SCRIPT)
        self._stats = script(STATS_SCRIPT)
        self._prune = script(PRUNE_SCRIPT)
        self._advance = script(ADVANCE_SCRIPT)

    def setup(self, streams: Sequence[StreamSpec]) -> None:
        """Create each stream and its group; idempotent."""
        if not streams:
            return
        with unavailable_on_outage("transitory", self._where):
            pipe = self._redis().pipeline(transaction=False)
            for spec in streams:
                pipe.xgroup_create(stream_key(spec.name), GROUP, id="0", mkstream=True)
            for result in pipe.execute(raise_on_error=False):
                if isinstance(result, ResponseError) and not str(result).startswith("BUSYGROUP"):
                    raise result

    def claim(self, stream: StreamSpec, consumer: str, count: int) -> list[Delivery]:
        """Hand out up to ``count`` entries: overdue redeliveries first, then new entries."""
        if count < 1:
            return []
        key = stream_key(stream.name)
        max_age = stream.max_age_seconds
        args: list[EncodableT] = [
            GROUP,
            consumer,
            count,
            max(0, round(stream.visibility_seconds * 1000)),
            "" if max_age is None else max(0, round(max_age * 1000)),
            repr(time.time()),
            EXPIRED,
            EXPIRE_BATCH,
            PENDING_ROUNDS,
        ]
        with unavailable_on_outage("transitory", self._where):
            rows = self._claim(
                keys=[key, f"{key}:dead", f"{key}:delayed"], args=args, client=self._redis()
            )
        return [
            Delivery(_text(i), _text(d), bytes(p), int(n), float(t) if t else _id_seconds(i))
            for i, d, p, n, t in rows
        ]

    def ack(self, stream: StreamSpec, ids: Sequence[str]) -> None:
        """Acknowledge and expunge: the stream keeps only unacknowledged entries."""
        if not ids:
            return
        key = stream_key(stream.name)
        with unavailable_on_outage("transitory", self._where):
            client = self._redis()
            for i in range(0, len(ids), ACK_CHUNK):
                self._ack(keys=[key], args=[GROUP, *ids[i : i + ACK_CHUNK]], client=client)

    def release(self, stream: StreamSpec, delivery: Delivery, delay_seconds: float) -> None:
        """Make the entry claimable again after ``min(delay_seconds, visibility)`` seconds."""
        idle_ms = max(0, round((stream.visibility_seconds - max(0.0, delay_seconds)) * 1000))
        key = stream_key(stream.name)
        keep = round(stream.dead_max_age_seconds)
        with unavailable_on_outage("transitory", self._where):
            self._release(
                keys=[key, f"{key}:fails"],
                args=[GROUP, delivery.id, idle_ms, repr(time.time()), keep],
                client=self._redis(),
            )

    def dead_letter(self, stream: StreamSpec, delivery: Delivery, reason: str) -> int:
        """Move the entry to ``pio:{<name>}:dead``, atomically with its removal; how many old
        dead letters were dropped to keep them within ``dead_max`` and ``dead_max_age``."""
        key = stream_key(stream.name)
        now = time.time()
        oldest_ms = max(0, round((now - stream.dead_max_age_seconds) * 1000))
        args: list[EncodableT] = [
            GROUP,
            delivery.id,
            delivery.dedup,
            delivery.payload,
            delivery.deliveries,
            reason,
            repr(now),
            repr(delivery.enqueued_at),
            stream.dead_max,
            oldest_ms,
        ]
        with unavailable_on_outage("transitory", self._where):
            dropped = self._dead(
                keys=[key, f"{key}:dead", f"{key}:fails"], args=args, client=self._redis()
            )
        return int(dropped)

    def dead_letters(self, stream: StreamSpec, limit: int) -> list[DeadEntry]:
        """The oldest ``limit`` dead letters."""
        key = f"{stream_key(stream.name)}:dead"
        with unavailable_on_outage("transitory", self._where):
            entries: Any = self._redis().xrange(key, count=limit)
        out = []
        for entry_id, raw in entries:
            f: dict[str, Any] = {_text(k): v for k, v in raw.items()}
            dead_at = float(f.get("at", 0) or 0)
            out.append(
                DeadEntry(
                    _text(entry_id),
                    _text(f.get("dedup", b"")),
                    bytes(f.get("payload", b"")),
                    int(f.get("deliveries", 0) or 0),
                    _text(f.get("reason", b"")),
                    float(f.get("t", 0) or 0) or dead_at,
                    float(f.get("first", 0) or 0) or dead_at,
                    dead_at,
                )
            )
        return out

    def redrive(self, stream: StreamSpec, ids: Sequence[str] | None, limit: int) -> int:
        """Put dead letters back on their stream (``ids``, or the oldest ``limit``)."""
        key = stream_key(stream.name)
        args: list[EncodableT] = [repr(time.time()), limit, *(ids or ())]
        if ids is not None and not ids:
            return 0
        with unavailable_on_outage("transitory", self._where):
            return int(self._redrive(keys=[key, f"{key}:dead"], args=args, client=self._redis()))

    def purge(self, stream: StreamSpec, ids: Sequence[str] | None) -> int:
        """Delete dead letters for good (``ids``, or all of them); how many."""
        key = f"{stream_key(stream.name)}:dead"
        with unavailable_on_outage("transitory", self._where):
            client = self._redis()
            if ids is None:
                n = int(client.xlen(key))
                client.delete(key)
                return n
            return int(client.xdel(key, *ids)) if ids else 0

    def remember(self, key: str, value: str, ttl_seconds: float) -> str:
        """Store ``value`` under ``key`` unless one is there; the value there now (one round
        trip: ``SET NX GET``)."""
        name = f"pio:idem:{{{quote(key, safe='')}}}"
        with unavailable_on_outage("transitory", self._where):
            before = self._redis().set(name, value, nx=True, get=True, px=round(ttl_seconds * 1000))
        return value if before is None else _text(before)

    def advance(self, key: str, ts: int) -> int:
        """Raise the shared clock ``key`` to ``ts`` if it is below; the shared clock now."""
        name = f"pio:clock:{{{quote(key, safe='')}}}"
        with unavailable_on_outage("transitory", self._where):
            return int(self._advance(keys=[name], args=[ts], client=self._redis()))

    def prune_consumers(self, stream: StreamSpec, idle_seconds: float) -> int:
        """Forget consumers (gone worker processes) idle that long and holding nothing."""
        key = stream_key(stream.name)
        with unavailable_on_outage("transitory", self._where):
            return int(
                self._prune(
                    keys=[key], args=[GROUP, round(idle_seconds * 1000)], client=self._redis()
                )
            )

    def stats(self, stream: StreamSpec) -> StreamStats:
        """Unacknowledged entries (= the stream's length), the oldest one's age, dead letters."""
        key = stream_key(stream.name)
        with unavailable_on_outage("transitory", self._where):
            # ages on the server's clock, the one that stamped the ids
            pending, first, dead, seconds, micros, delayed = self._stats(
                keys=[key, f"{key}:dead", f"{key}:delayed"], args=[], client=self._redis()
            )
        age = None
        if first:
            age = max(0.0, int(seconds) + int(micros) / 1e6 - _id_seconds(first))
        return StreamStats(int(pending) + int(delayed), age, int(dead), int(delayed))
