"""The raw arm's Redis scripts, written by hand with persistio's semantics.

- ENQUEUE (the notify stream only: the one place where a duplicate is visible, to the
  consumer): dedup markers (``SET NX PX <window>``, one hour) and ``XADD`` of fields d (dedup),
  p (payload), t (enqueue time) for the new items only; creates the consumer group with a new
  stream. Deferred tasks are plain ``XADD``s, no script: a duplicate task only repeats a
  last-write-wins write.
- PUT: last write wins by write timestamp, absolute expiry, never resurrect an expired value.
- CLAIM: entries idle past the visibility timeout first (``XAUTOCLAIM``: redelivery), then new
  ones (``XREADGROUP >``). Simpler than persistio's claim: the benchmark's streams have no
  ``max_age`` and the raw arm has no dead letters, which can only make the raw arm cheaper.
"""

from __future__ import annotations

GROUP = "persistio"
DEDUP_WINDOW_MS = 3_600_000  # the notify stream's dedup window: one hour
VISIBILITY_MS = 60_000  # persistio's task queues' visibility timeout

# KEYS[1] the stream, KEYS[2..n] one marker per item; ARGV: group, window (ms), enqueue time,
# then dedup and payload per item.
ENQUEUE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
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

# KEYS[1] the hash; ARGV: write ts (us), expire-at (ms since the epoch), payload.
PUT = """
local expire_at = tonumber(ARGV[2])
local t = redis.call('TIME')
if expire_at <= tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) then
  return 0
end
local stored = redis.call('HGET', KEYS[1], 'ts')
if stored and tonumber(stored) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'ts', ARGV[1], 'p', ARGV[3])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
"""

# KEYS[1] the stream; ARGV: group, consumer, count, visibility (ms). Returns {id, payload}.
CLAIM = """
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local count = tonumber(ARGV[3])
local out = {}
local function payload(fields)
  for i = 1, #fields, 2 do
    if fields[i] == 'p' then return fields[i + 1] end
  end
  return ''
end
local r = redis.pcall('XAUTOCLAIM', stream, group, consumer, ARGV[4], '0-0', 'COUNT', count)
if type(r) == 'table' and r.err then
  if not string.find(r.err, 'NOGROUP', 1, true) then return r end
  redis.pcall('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
  r = {'0-0', {}}
end
for _, e in ipairs(r[2]) do
  if type(e[2]) == 'table' then
    out[#out + 1] = {e[1], payload(e[2])}
  else
    redis.call('XACK', stream, group, e[1])
  end
end
if #out < count then
  local new = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count - #out,
    'STREAMS', stream, '>')
  if new then
    for _, e in ipairs(new[1][2]) do out[#out + 1] = {e[1], payload(e[2])} end
  end
end
return out
"""
