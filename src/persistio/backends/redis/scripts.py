"""The Lua scripts of the Redis backend: one write script, the claim and the release.

Each runs atomically on the server. Keys are passed in KEYS (never built inside a script), so a
Redis Cluster can route every call; in a cluster, one call only touches keys of one hash slot.
"""

from __future__ import annotations

# One round trip for every write of a batch: stream entries (deduplicated or not) and volatile
# values. ARGV[1] dedup window (ms), ARGV[2] enqueue time (epoch seconds, the entries' `t`), then
# one op after another, each starting with its kind:
#   'a' deduplicated append: KEYS stream, seen-marker; ARGV item id, payload
#   'q' plain append:        KEYS stream;              ARGV item id, payload
#   'f' fanned-out append:   KEYS seen-marker, n streams (one per consumer group);
#                            ARGV n, item id, payload
#   'A', 'Q', 'F': the same three, delayed: each stream key is its delayed set instead, and one
#                            more ARGV, the due time (ms since the epoch); the entry waits there
#                            (msgpack of item id, payload, enqueue time) until a claim moves it
#   'v' volatile put:        KEYS hash;                ARGV write ts (us), expire-at (ms), payload,
#                                                      write id (breaks a tie: the larger wins)
#   't' trim a stream:       KEYS stream;              ARGV max length ('' none), oldest id kept
#                            (ms, '' none): entries nobody consumed in time, counted by caller
# Returns one integer per op: 1 written, 0 duplicate or superseded, 2 expired before it arrived;
# for a trim, how many entries it removed.
# Timestamps (~1.8e15 us) are compared as Lua doubles: exact below 2^53 (until year ~2255).
WRITE_SCRIPT = """
local window, now = ARGV[1], ARGV[2]
local t = redis.call('TIME')
-- the server's clock decides expiry, as it is the one that will expire the key
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
local k, a = 1, 3
while a <= #ARGV do
  local kind = ARGV[a]
  if kind == 'v' then
    local ts, expire_at = ARGV[a + 1], tonumber(ARGV[a + 2])
    if expire_at <= now_ms then
      out[#out + 1] = 2  -- written late (a replay) and already expired: never resurrect it
    else
      local stored = redis.call('HMGET', KEYS[k], 'ts', 'w')
      local sts, wid = tonumber(stored[1]), ARGV[a + 4]
      if sts and (sts > tonumber(ts) or (sts == tonumber(ts) and (stored[2] or '') >= wid)) then
        out[#out + 1] = 0  -- an older write, or the same one, never wins
      else
        redis.call('HSET', KEYS[k], 'ts', ts, 'p', ARGV[a + 3], 'w', wid)
        redis.call('PEXPIREAT', KEYS[k], ARGV[a + 2])
        out[#out + 1] = 1
      end
    end
    k, a = k + 1, a + 5
  elseif kind == 't' then
    local trimmed = 0
    if ARGV[a + 1] ~= '' then
      trimmed = trimmed + redis.call('XTRIM', KEYS[k], 'MAXLEN', '~', ARGV[a + 1])
    end
    if ARGV[a + 2] ~= '' then
      trimmed = trimmed + redis.call('XTRIM', KEYS[k], 'MINID', '~', ARGV[a + 2])
    end
    out[#out + 1] = trimmed
    k, a = k + 1, a + 3
  elseif kind == 'a' then
    if redis.call('SET', KEYS[k + 1], '1', 'NX', 'PX', window) then
      redis.call('XADD', KEYS[k], '*', 'd', ARGV[a + 1], 'p', ARGV[a + 2], 't', now)
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
    k, a = k + 2, a + 3
  elseif kind == 'A' then
    if redis.call('SET', KEYS[k + 1], '1', 'NX', 'PX', window) then
      redis.call('ZADD', KEYS[k], ARGV[a + 3], cmsgpack.pack(ARGV[a + 1], ARGV[a + 2], now))
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
    k, a = k + 2, a + 4
  elseif kind == 'Q' then
    redis.call('ZADD', KEYS[k], ARGV[a + 3], cmsgpack.pack(ARGV[a + 1], ARGV[a + 2], now))
    out[#out + 1] = 1
    k, a = k + 1, a + 4
  elseif kind == 'F' then
    local n = tonumber(ARGV[a + 1])
    if redis.call('SET', KEYS[k], '1', 'NX', 'PX', window) then
      local member = cmsgpack.pack(ARGV[a + 2], ARGV[a + 3], now)
      for i = 1, n do redis.call('ZADD', KEYS[k + i], ARGV[a + 4], member) end
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
    k, a = k + 1 + n, a + 5
  elseif kind == 'f' then
    local n = tonumber(ARGV[a + 1])
    if redis.call('SET', KEYS[k], '1', 'NX', 'PX', window) then
      for i = 1, n do
        redis.call('XADD', KEYS[k + i], '*', 'd', ARGV[a + 2], 'p', ARGV[a + 3], 't', now)
      end
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
    k, a = k + 1 + n, a + 4
  else
    redis.call('XADD', KEYS[k], '*', 'd', ARGV[a + 1], 'p', ARGV[a + 2], 't', now)
    out[#out + 1] = 1
    k, a = k + 1, a + 3
  end
end
return out
"""

# KEYS[1] the stream, KEYS[2] its dead letters, KEYS[3] its delayed entries; ARGV: group,
# consumer, count, visibility (ms), max age (ms, or '' for none), now (epoch seconds, the dead
# letters' `at`), the expiry reason, EXPIRE_BATCH, PENDING_ROUNDS.
# Delayed entries now due join the stream first. Returns {id, dedup, payload, deliveries,
# enqueued_at} per entry handed out.
CLAIM_SCRIPT = """
local stream, dead, group, consumer = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local count = tonumber(ARGV[3])
do
  local t = redis.call('TIME')
  local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now_ms, 'LIMIT', 0, 1000)
  for _, m in ipairs(due) do
    local d, p, enqueued = cmsgpack.unpack(m)
    redis.call('XADD', stream, '*', 'd', d, 'p', p, 't', enqueued)
    redis.call('ZREM', KEYS[3], m)
  end
end
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

# KEYS[1] the stream, KEYS[2] its first-failure times; ARGV: group, id, idle (ms), now (epoch
# seconds), keep (s). Keeps the entry with its current consumer; notes when it first failed.
RELEASE_SCRIPT = """
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if p.err or not p[1] then return 0 end  -- acknowledged, or its stream was deleted: nothing to do
redis.call('XCLAIM', KEYS[1], ARGV[1], p[1][2], 0, ARGV[2], 'IDLE', ARGV[3], 'JUSTID')
redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[5])  -- failures are rare: the hash lives while they go on
return 1
"""

# Move an entry to the dead letters, atomically with its removal, and keep the dead letters
# bounded by count and age. KEYS[1] the stream, KEYS[2] its dead letters, KEYS[3] its
# first-failure times; ARGV: group, id, item id, payload, deliveries, reason, now (epoch s),
# enqueued at, max dead letters, oldest dead letter kept (ms since the epoch).
# Returns how many older dead letters were dropped to keep the bounds.
DEAD_SCRIPT = """
local first = redis.call('HGET', KEYS[3], ARGV[2]) or ARGV[7]
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('XADD', KEYS[2], '*', 'dedup', ARGV[3], 'payload', ARGV[4], 'deliveries', ARGV[5],
  'reason', ARGV[6], 'at', ARGV[7], 'first', first, 't', ARGV[8])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
local dropped = redis.call('XTRIM', KEYS[2], 'MAXLEN', ARGV[9])
return dropped + redis.call('XTRIM', KEYS[2], 'MINID', ARGV[10])
"""

# Put dead letters back on their stream (the ids given, or the oldest ARGV[3]). KEYS[1] the
# stream, KEYS[2] its dead letters; ARGV: now (epoch s), limit, then ids. Returns how many.
REDRIVE_SCRIPT = """
local entries = {}
if #ARGV > 2 then
  for i = 3, #ARGV do
    local found = redis.call('XRANGE', KEYS[2], ARGV[i], ARGV[i])
    if found[1] then entries[#entries + 1] = found[1] end
  end
else
  entries = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', tonumber(ARGV[2]))
end
for _, e in ipairs(entries) do
  local f = {}
  for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
  redis.call('XADD', KEYS[1], '*', 'd', f['dedup'] or '', 'p', f['payload'] or '', 't', ARGV[1])
  redis.call('XDEL', KEYS[2], e[1])
end
return #entries
"""

# Acknowledge and expunge, atomically, in one call (a MULTI block is not sent alike to a single
# server and to a cluster; a script is). KEYS[1] the stream; ARGV: group, then ids.
ACK_SCRIPT = """
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
return redis.call('XDEL', KEYS[1], unpack(ids))
"""

# A stream's figures in one call, with the clock of the server that stamped its ids.
# KEYS[1] the stream, KEYS[2] its dead letters, KEYS[3] its delayed entries. Returns {length,
# first id or '', dead letters, server seconds, microseconds, delayed entries}.
STATS_SCRIPT = """
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local t = redis.call('TIME')
local id = ''
if first[1] then id = first[1][1] end
return {redis.call('XLEN', KEYS[1]), id, redis.call('XLEN', KEYS[2]), t[1], t[2],
  redis.call('ZCARD', KEYS[3])}
"""

# Forget consumers that hold nothing and have been idle longer than ARGV[2] ms (worker processes
# that are gone): a group's consumer list would otherwise grow with every restart.
# KEYS[1] the stream; ARGV: group, idle (ms). Returns how many were removed.
PRUNE_SCRIPT = """
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then return 0 end
local removed = 0
for _, c in ipairs(consumers) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if tonumber(f['pending']) == 0 and tonumber(f['idle']) > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    removed = removed + 1
  end
end
return removed
"""

# KEYS[1] the shared clock; ARGV[1] a write timestamp (us). Keeps the larger and returns it, as
# a string (exact; the key lives 30 days past its last raise, like all bookkeeping, bounded).
ADVANCE_SCRIPT = """
local high = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > high then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', 2592000)
  return ARGV[1]
end
return string.format('%.0f', high)
"""
