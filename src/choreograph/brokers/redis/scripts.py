"""Lua scripts of the Redis broker: each runs atomically on the server.

* ``PUBLISH`` appends records to one partition with dense offsets.
* ``HEARTBEAT`` keeps a member alive and (re)balances partition leases.
* ``LEAVE`` drops a member and its leases.
* ``RESUBMIT`` is the dead letter status check-and-set.
* ``ACK`` finishes settled records of several partitions in one call.
* ``WAITING`` reads the group generation and the retry schedule of several partitions in one call.

The last two exist for speed: redis-py spends about 15 us of client CPU per
command in a pipeline, and a settle touching eight partitions was 33 commands.
"""

from __future__ import annotations

from typing import Final

PUBLISH: Final = """
-- KEYS: stream, stream meta.  ARGV: now, max_length (0: none), then (key, value, headers) per record;
-- key is '' for none or '=' .. key, headers '' for none.
local count = (#ARGV - 2) / 3
local first = redis.call('HINCRBY', KEYS[2], 'n', count) - count
local t = ARGV[1]
local last = redis.call('HGET', KEYS[2], 't')
if last and tonumber(last) > tonumber(t) then t = last end
redis.call('HSET', KEYS[2], 't', t)
local maxlen = tonumber(ARGV[2])
for i = 0, count - 1 do
  local key, value, headers = ARGV[3 + i * 3], ARGV[4 + i * 3], ARGV[5 + i * 3]
  local args = {'XADD', KEYS[1]}
  if maxlen > 0 then
    table.insert(args, 'MAXLEN'); table.insert(args, '~'); table.insert(args, maxlen)
  end
  table.insert(args, string.format('%d-0', first + i + 1))
  table.insert(args, 'v'); table.insert(args, value)
  table.insert(args, 't'); table.insert(args, t)
  if key ~= '' then table.insert(args, 'k'); table.insert(args, string.sub(key, 2)) end
  if headers ~= '' then table.insert(args, 'h'); table.insert(args, headers) end
  redis.call(unpack(args))
end
return first
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
-- KEYS: per partition: stream, retries, attempts, resubmitted.  ARGV: group, then per partition a count n
-- and n stream ids. Acks the ids and forgets their retry state (one atomic step with the MULTI around it).
local group, at = ARGV[1], 2
for k = 1, #KEYS, 4 do
  local n = tonumber(ARGV[at])
  at = at + 1
  for first = 0, n - 1, 1000 do  -- unpack() is bounded by Lua's C stack: 1,000 ids a call
    local ids = {}
    for i = first, math.min(n, first + 1000) - 1 do ids[#ids + 1] = ARGV[at + i] end
    redis.call('XACK', KEYS[k], group, unpack(ids))
    redis.call('ZREM', KEYS[k + 1], unpack(ids))
    redis.call('HDEL', KEYS[k + 2], unpack(ids))
    redis.call('HDEL', KEYS[k + 3], unpack(ids))
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
