"""Lua scripts of the Redis broker: each runs atomically on the server.

* ``PUBLISH`` appends records to the partitions of a topic with dense offsets, in one call.
* ``HEARTBEAT`` keeps a member alive and (re)balances partition leases.
* ``LEAVE`` drops a member and its leases.
* ``RESUBMIT`` is the dead letter status check-and-set.
* ``ACK`` finishes settled records of several partitions and remembers their dedupe keys, in one call.
* ``WAITING`` reads the group generation and the retry schedule of several partitions in one call.

The last two exist for speed: redis-py spends about 15 us of client CPU per
command in a pipeline, and a settle touching eight partitions was 33 commands.
A settlement that only acks is that one ``ACK`` call, without a MULTI around it.
"""

from __future__ import annotations

from typing import Final

PUBLISH: Final = """
-- KEYS: per partition: stream, stream meta.  ARGV: now, max_length (0: none), then per partition a count n
-- and n (key, value, headers) triples; key is '' for none or '=' .. key, headers '' for none.
-- One XADD per record with its arguments written out (building an argument table per record took more of
-- the server's time than the XADDs), then, with a max_length, one XTRIM per partition.
-- Another client's XADD <stream> * leaves the stream's top above our counter: the first XADD of a partition
-- is a pcall, and when it fails the counter moves above the stream's last id (offsets stay increasing, with
-- a gap) instead of every later publish failing.
local now, maxlen, call, pcall = ARGV[1], tonumber(ARGV[2]), redis.call, redis.pcall
local format, sub = string.format, string.sub
local function add(c, stream, id, key, value, headers, t)
  if key == '' then
    if headers == '' then return c('XADD', stream, id, 'v', value, 't', t) end
    return c('XADD', stream, id, 'v', value, 't', t, 'h', headers)
  elseif headers == '' then return c('XADD', stream, id, 'v', value, 't', t, 'k', sub(key, 2)) end
  return c('XADD', stream, id, 'v', value, 't', t, 'k', sub(key, 2), 'h', headers)
end
local function top(stream)  -- the milliseconds part of the stream's last generated id
  local info = pcall('XINFO', 'STREAM', stream)
  if type(info) == 'table' and not info.err then
    for j = 1, #info - 1, 2 do
      if info[j] == 'last-generated-id' then return tonumber(string.match(info[j + 1], '^(%d+)')) or 0 end
    end
  end
  return 0
end
local at = 3
for k = 1, #KEYS, 2 do
  local stream, meta, count = KEYS[k], KEYS[k + 1], tonumber(ARGV[at])
  local first = call('HINCRBY', meta, 'n', count) - count
  local t = now
  local last = call('HGET', meta, 't')
  if last and tonumber(last) > tonumber(t) then t = last end
  call('HSET', meta, 't', t)
  for i = 1, count do
    local key, value, headers = ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
    at = at + 3
    if i > 1 then add(call, stream, format('%d-0', first + i), key, value, headers, t)
    else
      local done = add(pcall, stream, format('%d-0', first + 1), key, value, headers, t)
      if type(done) == 'table' and done.err then
        local above = top(stream)
        if above < first + 1 then return redis.error_reply(done.err) end
        first = above
        call('HSET', meta, 'n', first + count)
        add(call, stream, format('%d-0', first + 1), key, value, headers, t)
      end
    end
  end
  at = at + 1
  if maxlen > 0 then call('XTRIM', stream, 'MAXLEN', '~', maxlen) end
end
return 1
"""

HEARTBEAT: Final = """
-- KEYS: members, leases, generation.  ARGV: member, partitions, now_ms, lease_ms, rebalance ('1' or '0').
-- Returns {generation, partition...}: the partitions this member holds afterwards.
local me, n, now, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local changed = false
if not redis.call('ZSCORE', KEYS[1], me) then changed = true end
redis.call('ZADD', KEYS[1], now + ttl, me)
if redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now) > 0 then changed = true end
local owner, free, mine = {}, {}, {}
local raw = redis.call('HGETALL', KEYS[2])
for i = 1, #raw, 2 do
  local p, value = tonumber(raw[i]), raw[i + 1]
  local sep = string.find(value, '|', 1, true)
  local who, expires = string.sub(value, 1, sep - 1), tonumber(string.sub(value, sep + 1))
  if expires >= now then owner[p] = who end
end
for p = 0, n - 1 do
  if owner[p] == me then table.insert(mine, p) elseif owner[p] == nil then table.insert(free, p) end
end
if ARGV[5] == '1' then
  local list = redis.call('ZRANGE', KEYS[1], 0, -1)
  table.sort(list)
  local index = 0
  for i, m in ipairs(list) do if m == me then index = i - 1 end end
  local share = math.floor(n / #list)
  if index < n % #list then share = share + 1 end
  while #mine > share do
    redis.call('HDEL', KEYS[2], tostring(table.remove(mine)))
    changed = true
  end
  local i = 1
  while #mine < share and i <= #free do
    table.insert(mine, free[i]); i = i + 1
    changed = true
  end
  table.sort(mine)
end
for _, p in ipairs(mine) do redis.call('HSET', KEYS[2], tostring(p), me .. '|' .. (now + ttl)) end
if changed then redis.call('INCR', KEYS[3]) end
local out = {tonumber(redis.call('GET', KEYS[3]) or '0')}
for _, p in ipairs(mine) do table.insert(out, p) end
return out
"""

LEAVE: Final = """
-- KEYS: members, leases, generation.  ARGV: member.
redis.call('ZREM', KEYS[1], ARGV[1])
local raw = redis.call('HGETALL', KEYS[2])
for i = 1, #raw, 2 do
  if string.sub(raw[i + 1], 1, #ARGV[1] + 1) == ARGV[1] .. '|' then redis.call('HDEL', KEYS[2], raw[i]) end
end
redis.call('INCR', KEYS[3])
return 1
"""

RESUBMIT: Final = """
-- KEYS: dead letter hash, group retries of its partition, group attempts, group resubmitted.
-- ARGV: stream id, now_ms, attempt record, packed record.
-- Returns -1 if the letter is absent, 0 if it is not open, 1 once resubmitted.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if status ~= 'open' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'resubmitted')
redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

PURGE: Final = """
-- KEYS: dead letter hash.  Returns 1 if it was open and is now purged, else 0.
if redis.call('HGET', KEYS[1], 'status') == 'open' then
  redis.call('HSET', KEYS[1], 'status', 'purged')
  return 1
end
return 0
"""

ACK: Final = """
-- KEYS: the group's inbox, then per partition: stream, retries, attempts, resubmitted.
-- ARGV: group, now, inbox cutoff ('' for no trim), a count m and m dedupe keys, then per partition a count n
-- and n stream ids. Remembers the dedupe keys (score now), trims the inbox below the cutoff, acks the ids
-- and forgets their retry state (most partitions have none: absent keys are skipped). One atomic step,
-- alone or inside a MULTI. unpack() is bounded by Lua's C stack: at most 1,000 values a call.
local group, now, cutoff, call = ARGV[1], ARGV[2], ARGV[3], redis.call
local m = tonumber(ARGV[4])
for first = 5, 4 + m, 500 do
  local args, j = {}, 0
  for i = first, math.min(4 + m, first + 499) do args[j + 1] = now; args[j + 2] = ARGV[i]; j = j + 2 end
  call('ZADD', KEYS[1], unpack(args))
end
if cutoff ~= '' then call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff) end
local at = 5 + m
for k = 2, #KEYS, 4 do
  local n = tonumber(ARGV[at])
  local state = {}
  for s = 1, 3 do state[s] = call('EXISTS', KEYS[k + s]) == 1 end
  at = at + 1
  for first = at, at + n - 1, 1000 do
    local last = math.min(at + n - 1, first + 999)
    call('XACK', KEYS[k], group, unpack(ARGV, first, last))
    if state[1] then call('ZREM', KEYS[k + 1], unpack(ARGV, first, last)) end
    if state[2] then call('HDEL', KEYS[k + 2], unpack(ARGV, first, last)) end
    if state[3] then call('HDEL', KEYS[k + 3], unpack(ARGV, first, last)) end
  end
  at = at + n
end
return 1
"""

WAITING: Final = """
-- KEYS: group generation, then the retries sorted set of each partition.
-- Returns {generation, {id, due, id, due, ...} per partition}.
local out = {redis.call('GET', KEYS[1]) or '0'}
for k = 2, #KEYS do
  out[k] = redis.call('ZRANGE', KEYS[k], 0, -1, 'WITHSCORES')
end
return out
"""
