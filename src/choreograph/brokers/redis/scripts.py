"""Lua scripts of the Redis broker: each runs atomically on the server.

* ``PUBLISH`` appends records to the partitions of a topic with dense offsets, in one call.
* ``HEARTBEAT`` keeps a member alive and (re)balances partition leases.
* ``LEAVE`` drops a member and its leases.
* ``RESUBMIT`` is the dead letter status check-and-set.
* ``ACK`` finishes settled records of several partitions and remembers their dedupe keys, in one call.
* ``WAITING`` reads the group generation and the retry schedule of several partitions in one call.
* ``SCHEDULE`` stores dead letters and retry schedules of a settlement.

A settle runs its scripts :func:`fenced`: each first checks, atomically with
its writes, that the settling member still holds the partitions it settles
under the lease tokens it fetched them with, and fails with ``LEASELOST``
otherwise. Inside one MULTI the checks all see the same leases, so either
every part of a settlement is applied or none is.

The last two exist for speed: redis-py spends about 15 us of client CPU per
command in a pipeline, and a settle touching eight partitions was 33 commands.
A settlement that only acks is that one ``ACK`` call, without a MULTI around it.
"""

from __future__ import annotations

from typing import Final

PUBLISH: Final = """
-- KEYS: per partition: stream, stream meta.  ARGV: now, max_length (0: none), expected ('1' per partition
-- whose meta must exist: the publisher wrote there before; '' for no check), then per partition a count n
-- and n (key, value, headers) triples; key is '' for none or '=' .. key, headers '' for none.
-- A partition expected but without its meta lost its data (a flush, an eviction): nothing is written, and
-- the script fails with 'STORAGELOST <meta key>'.
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
local expected = ARGV[3]
for k = 2, #KEYS, 2 do
  if sub(expected, k / 2, k / 2) == '1' and call('EXISTS', KEYS[k]) == 0 then
    return redis.error_reply('STORAGELOST ' .. KEYS[k])
  end
end
local at = 4
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
-- A lease is 'member|expires_ms|token'; a partition taken gets a new token (the generation it bumps to), a
-- renewal keeps it, so a member that lost a partition and took it back holds a different token than the
-- one its old deliveries were fetched under (settles are fenced by it: see fenced()).
-- Returns {generation, partition, token, ...}: the partitions this member holds afterwards and their tokens.
local me, n, now, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local changed = false
if not redis.call('ZSCORE', KEYS[1], me) then changed = true end
redis.call('ZADD', KEYS[1], now + ttl, me)
if redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now) > 0 then changed = true end
local owner, token, free, mine = {}, {}, {}, {}
local raw = redis.call('HGETALL', KEYS[2])
for i = 1, #raw, 2 do
  local p, value = tonumber(raw[i]), raw[i + 1]
  local a = string.find(value, '|', 1, true)
  local b = string.find(value, '|', a + 1, true)
  local expires = tonumber(string.sub(value, a + 1, (b or 0) - 1))
  if expires >= now then
    owner[p] = string.sub(value, 1, a - 1)
    token[p] = b and string.sub(value, b + 1) or '0'
  end
end
for p = 0, n - 1 do
  if owner[p] == me then table.insert(mine, p) elseif owner[p] == nil then table.insert(free, p) end
end
local taken = {}
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
    table.insert(mine, free[i]); taken[free[i]] = true; i = i + 1
    changed = true
  end
  table.sort(mine)
end
local generation = tonumber(redis.call('GET', KEYS[3]) or '0')
if changed then generation = redis.call('INCR', KEYS[3]) end
local out = {generation}
for _, p in ipairs(mine) do
  local t = token[p]
  if taken[p] then t = tostring(generation) end
  redis.call('HSET', KEYS[2], tostring(p), me .. '|' .. (now + ttl) .. '|' .. t)
  table.insert(out, p); table.insert(out, t)
end
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

SCHEDULE: Final = """
-- KEYS: the dead letter index, then per dead letter its hash, then per retry: retries sorted set, attempts hash.
-- ARGV: now, a count d of dead letters, per letter: id, a count f and f field/value pairs; then per retry:
-- stream id, due ms, attempt record.
local now, d, call = ARGV[1], tonumber(ARGV[2]), redis.call
local at, k = 3, 2
for _ = 1, d do
  local id, f = ARGV[at], tonumber(ARGV[at + 1])
  call('HSET', KEYS[k], unpack(ARGV, at + 2, at + 1 + f))
  call('ZADD', KEYS[1], now, id)
  at, k = at + 2 + f, k + 1
end
while k <= #KEYS do
  call('ZADD', KEYS[k], ARGV[at + 1], ARGV[at])
  call('HSET', KEYS[k + 1], ARGV[at], ARGV[at + 2])
  at, k = at + 3, k + 2
end
return 1
"""

STORAGE_LOST: Final = "STORAGELOST"
"""First word of the error the publish script fails with when a partition it had written to lost its meta."""

LEASE_LOST: Final = "LEASELOST"
"""First word of the error a fenced script fails with when the member no longer holds a partition."""

_FENCE: Final = """
-- Fence. KEYS[1]: the group's leases.  ARGV[1]: member, ARGV[2]: now_ms, ARGV[3]: a count n, then n
-- (partition, token) pairs. The script below runs with these taken off KEYS and ARGV.
local leases, me, now, n = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 0, n - 1 do
  local p, want = ARGV[4 + 2 * i], ARGV[5 + 2 * i]
  local value = redis.call('HGET', leases, p)
  local ok = false
  if value then
    local a = string.find(value, '|', 1, true)
    local b = string.find(value, '|', a + 1, true)
    ok = b ~= nil and string.sub(value, 1, a - 1) == me and string.sub(value, b + 1) == want
      and tonumber(string.sub(value, a + 1, b - 1)) >= now
  end
  if not ok then
    return redis.error_reply('LEASELOST member ' .. me .. ' no longer holds partition ' .. p)
  end
end
local keys, args = {}, {}
for i = 2, #KEYS do keys[i - 1] = KEYS[i] end
for i = 4 + 2 * n, #ARGV do args[#args + 1] = ARGV[i] end
local function body(KEYS, ARGV)
"""


def fenced(script: str) -> str:
    """Return ``script`` behind a lease check: its KEYS and ARGV are preceded by the fence's (see :func:`fence`).

    The fenced script applies nothing and fails with ``LEASELOST ...`` if any
    listed partition's lease is not this member's, under the same token, and
    unexpired at ``now_ms``.
    """
    return f"{_FENCE}{script}\nend\nreturn body(keys, args)\n"


def fence(arguments: list[object], leases: str, member: str, now_ms: int, tokens: dict[int, str]) -> list[object]:
    """Put the fence's keys and arguments in front of a script's ``[key count, *keys, *argv]``."""
    count = int(str(arguments[0]))
    pairs: list[object] = []
    for p, token in tokens.items():
        pairs += [p, token]
    return [
        count + 1,
        leases,
        *arguments[1 : 1 + count],
        member,
        now_ms,
        len(tokens),
        *pairs,
        *arguments[1 + count :],
    ]


FENCED_PUBLISH: Final = fenced(PUBLISH)
FENCED_ACK: Final = fenced(ACK)
FENCED_SCHEDULE: Final = fenced(SCHEDULE)
