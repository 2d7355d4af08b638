"""Transitory tier on Redis Streams with one consumer group, ``persistio``, per stream.

The same semantics as ``SQLiteQueue``, mapped onto stream commands:

- ``pio:{<name>}`` is the stream, ``pio:{<name>}:dead`` its dead letters and
  ``pio:{<name>}:seen:<dedup>`` the dedup markers; the ``{<name>}`` hash tag keeps all of a
  stream's keys in one Redis Cluster slot, which the Lua scripts and MULTI blocks rely on.
- enqueue: a Lua script per batch sets each marker with ``SET NX PX <window>`` and adds the entry
  (fields ``d`` dedup, ``p`` payload, ``t`` enqueue time) only when the marker is new.
- claim: a Lua script dead-letters entries past ``max_age`` (their id is their server-side
  enqueue time, so they are a prefix of the stream), takes entries idle for longer than the
  visibility timeout from the pending list (``XAUTOCLAIM``: redelivery), then new ones
  (``XREADGROUP >``). The delivery count is the group's own counter (``XPENDING``).
- ack: ``XACK`` + ``XDEL``, so the stream holds exactly the entries not yet acknowledged.
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

from redis.exceptions import ResponseError
from redis.typing import EncodableT

from ..config import Options, masked
from .base import Delivery, QueueItem, StreamSpec, StreamStats
from .redis_client import open_client, unavailable_on_outage

GROUP = "persistio"
EXPIRED = "expired: older than max_age"
# an intent name, or an internal task queue (tasks.high, tasks.normal, tasks.low)
STREAM_NAME = re.compile(r"[a-z][a-z0-9_]*|([a-z][a-z0-9_]*\.)?tasks\.[a-z]+")
ENQUEUE_CHUNK = 500  # items per EVALSHA: bounds the script's run time and the request size
EXPIRE_BATCH = 500  # expired entries dead-lettered per claim, bounding that script's run time
PENDING_ROUNDS = 10  # XAUTOCLAIM calls per claim; each scans up to 10 x COUNT pending entries

# KEYS[1] the stream, KEYS[2..n] one seen marker per item; ARGV: group, window (ms), enqueue
# time, then dedup and payload per item. Returns how many entries were added.
ENQUEUE_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  -- the group starts at id 0, so it delivers every entry added before it existed
  redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
end
local added = 0
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'PX', ARGV[2]) then
    redis.call('XADD', KEYS[1], '*', 'd', ARGV[2 * i], 'p', ARGV[2 * i + 1], 't', ARGV[3])
    added = added + 1
  end
end
return added
"""

# KEYS[1] the stream, KEYS[2] its dead letters; ARGV: group, consumer, count, visibility (ms),
# max age (ms, or '' for none), now (epoch seconds, the dead letters' `at`), the expiry reason,
# EXPIRE_BATCH, PENDING_ROUNDS.
# Returns {id, dedup, payload, deliveries, enqueued_at} per entry handed out.
CLAIM_SCRIPT = """
local stream, dead, group, consumer = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local count = tonumber(ARGV[3])
local cutoff = nil
if ARGV[5] ~= '' then
  local t = redis.call('TIME')  -- the clock that stamped the ids
  cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[5])
end

local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return ''
end

local function deliveries(id)
  local p = redis.call('XPENDING', stream, group, id, id, 1)
  if p[1] then return p[1][4] end
  return 0
end

local function expire(id, fields, n)
  redis.call('XADD', dead, '*', 'dedup', field(fields, 'd'), 'payload', field(fields, 'p'),
    'deliveries', n, 'reason', ARGV[7], 'at', ARGV[6])
  redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
end

local function expired(id)
  return cutoff ~= nil and tonumber(string.match(id, '^(%d+)')) < cutoff
end

local out = {}
local function hand_out(id, fields, n)
  if expired(id) then
    expire(id, fields, n - 1)  -- this hand-out did not happen
  else
    out[#out + 1] = {id, field(fields, 'd'), field(fields, 'p'), n, field(fields, 't')}
  end
end

local function create_group()
  -- no setup() yet: the group starts at id 0, so entries added before it are delivered
  local ok = redis.pcall('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
  if type(ok) == 'table' and ok.err and not string.find(ok.err, 'BUSYGROUP', 1, true) then
    error(ok)
  end
end

if cutoff ~= nil then
  -- ids are enqueue times, so the expired entries are the stream's head, in flight or not;
  -- sweeping them first means XAUTOCLAIM below never hands one out
  local last = string.format('%.0f', cutoff - 1)
  local old = redis.call('XRANGE', stream, '-', last, 'COUNT', tonumber(ARGV[8]))
  if #old > 0 then create_group() end
  for _, e in ipairs(old) do
    expire(e[1], e[2], deliveries(e[1]))
  end
end

local r = redis.pcall('XAUTOCLAIM', stream, group, consumer, ARGV[4], '0-0', 'COUNT', count)
if type(r) == 'table' and r.err then
  if not string.find(r.err, 'NOGROUP', 1, true) then return r end
  create_group()
  r = {'0-0', {}}
end

local rounds = tonumber(ARGV[9])
while true do
  for _, e in ipairs(r[2]) do
    if type(e[2]) == 'table' then
      hand_out(e[1], e[2], deliveries(e[1]))
    else
      redis.call('XACK', stream, group, e[1])  -- Redis 6.2: deleted while pending
    end
  end
  rounds = rounds - 1
  if r[1] == '0-0' or #out >= count or rounds <= 0 then break end
  r = redis.call('XAUTOCLAIM', stream, group, consumer, ARGV[4], r[1], 'COUNT', count - #out)
end

if #out < count then
  local new = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count - #out,
    'STREAMS', stream, '>')
  if new then
    for _, e in ipairs(new[1][2]) do hand_out(e[1], e[2], 1) end
  end
end
return out
"""

# KEYS[1] the stream; ARGV: group, id, idle (ms). Keeps the entry with its current consumer.
RELEASE_SCRIPT = """
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if p.err or not p[1] then return 0 end  -- acknowledged, or its stream was deleted: nothing to do
redis.call('XCLAIM', KEYS[1], ARGV[1], p[1][2], 0, ARGV[2], 'IDLE', ARGV[3], 'JUSTID')
return 1
"""


def stream_key(name: str) -> str:
    """``pio:{<name>}``; only an intent name or an internal queue name is accepted."""
    if not STREAM_NAME.fullmatch(name):
        raise ValueError(f"not a stream name: {name!r}")
    return f"pio:{{{name}}}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id_seconds(entry_id: Any) -> float:
    return int(_text(entry_id).partition("-")[0]) / 1000


class RedisStreams:
    """Transitory backend on Redis Streams: at-least-once delivery through a consumer group.

    Any number of processes may share a stream: the group hands each entry to one consumer,
    and an entry left unacknowledged past the visibility timeout is handed out again.

    Args:
        url: ``redis://[user:password@]host:port/db`` or ``rediss://...``.
        options: Pool size, timeouts and the enqueue dedup window.
        setting: Names the setting in a ``ConfigError`` for a malformed URL.
    """

    def __init__(self, url: str, options: Options, setting: str) -> None:
        self._where = masked(url)
        self._client = open_client(url, options, setting)
        self._window_ms = max(1, round(options.dedup_window_seconds * 1000))
        self._enqueue = self._client.register_script(ENQUEUE_SCRIPT)
        self._claim = self._client.register_script(CLAIM_SCRIPT)
        self._release = self._client.register_script(RELEASE_SCRIPT)

    def __repr__(self) -> str:
        return f"RedisStreams({self._where!r})"

    def setup(self, streams: Sequence[StreamSpec]) -> None:
        """Create each stream and its group; idempotent."""
        if not streams:
            return
        with unavailable_on_outage("transitory", self._where):
            pipe = self._client.pipeline(transaction=False)
            for spec in streams:
                pipe.xgroup_create(stream_key(spec.name), GROUP, id="0", mkstream=True)
            for result in pipe.execute(raise_on_error=False):
                if isinstance(result, ResponseError) and not str(result).startswith("BUSYGROUP"):
                    raise result

    def enqueue(self, stream: StreamSpec, items: Sequence[QueueItem]) -> int:
        """Add the items not seen on this stream within the dedup window; return how many."""
        if not items:
            return 0
        key = stream_key(stream.name)
        now = repr(time.time())
        calls: list[tuple[list[str], list[EncodableT]]] = []
        for start in range(0, len(items), ENQUEUE_CHUNK):
            chunk = items[start : start + ENQUEUE_CHUNK]
            keys = [key, *(f"{key}:seen:{item.dedup}" for item in chunk)]
            args: list[EncodableT] = [GROUP, self._window_ms, now]
            for item in chunk:
                args += (item.dedup, item.payload)
            calls.append((keys, args))
        with unavailable_on_outage("transitory", self._where):
            if len(calls) == 1:
                return int(self._enqueue(keys=calls[0][0], args=calls[0][1]))
            pipe = self._client.pipeline(transaction=False)
            for keys, args in calls:
                self._enqueue(keys=keys, args=args, client=pipe)
            return sum(int(n) for n in pipe.execute())

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
            rows = self._claim(keys=[key, f"{key}:dead"], args=args)
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
            pipe = self._client.pipeline(transaction=True)
            pipe.xack(key, GROUP, *ids)
            pipe.xdel(key, *ids)
            pipe.execute()

    def release(self, stream: StreamSpec, delivery: Delivery, delay_seconds: float) -> None:
        """Make the entry claimable again after ``min(delay_seconds, visibility)`` seconds."""
        idle_ms = max(0, round((stream.visibility_seconds - max(0.0, delay_seconds)) * 1000))
        with unavailable_on_outage("transitory", self._where):
            self._release(keys=[stream_key(stream.name)], args=[GROUP, delivery.id, idle_ms])

    def dead_letter(self, stream: StreamSpec, delivery: Delivery, reason: str) -> None:
        """Move the entry to ``pio:{<name>}:dead``, atomically with its removal."""
        key = stream_key(stream.name)
        fields: dict[EncodableT, EncodableT] = {
            "dedup": delivery.dedup,
            "payload": delivery.payload,
            "deliveries": delivery.deliveries,
            "reason": reason,
            "at": repr(time.time()),
        }
        with unavailable_on_outage("transitory", self._where):
            pipe = self._client.pipeline(transaction=True)
            pipe.xadd(f"{key}:dead", fields)
            pipe.xack(key, GROUP, delivery.id)
            pipe.xdel(key, delivery.id)
            pipe.execute()

    def stats(self, stream: StreamSpec) -> StreamStats:
        """Unacknowledged entries (= the stream's length), the oldest one's age, dead letters."""
        key = stream_key(stream.name)
        with unavailable_on_outage("transitory", self._where):
            pipe = self._client.pipeline(transaction=False)
            pipe.xlen(key)
            pipe.xrange(key, count=1)
            pipe.xlen(f"{key}:dead")
            pipe.time()  # ages on the server's clock, the one that stamped the ids
            pending, first, dead, (seconds, micros) = pipe.execute()
        age = None
        if first:
            age = max(0.0, seconds + micros / 1e6 - _id_seconds(first[0][0]))
        return StreamStats(int(pending), age, int(dead))

    def ping(self) -> None:
        with unavailable_on_outage("transitory", self._where):
            self._client.ping()

    def close(self) -> None:
        self._client.close()
        self._client.connection_pool.disconnect()


def from_url(url: str, options: Options, setting: str) -> RedisStreams:
    """The factory named in ``persistio.config.REGISTRY`` for ``redis://`` and ``rediss://``."""
    return RedisStreams(url, options, setting)
