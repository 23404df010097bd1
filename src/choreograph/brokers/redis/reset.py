"""The Redis broker's group reset (:class:`~choreograph.core.group_admin.GroupAdmin`).

One Lua script, atomic on the server (every key of a topic shares its hash
tag, so it runs on one node of a cluster too): per partition it acknowledges
the group's pending entries, drops its retry schedule and attempt counts —
except resubmitted dead letters, which stay pending and scheduled — and moves
the group's last-delivered id (``XGROUP SETID``, or ``CREATE`` for a new
group); then it deletes the group's partition leases and bumps its generation.

Running members are fenced by their leases: every settle checks its lease
tokens atomically with its writes (:func:`.scripts.fenced`), and none is
valid any more, so a settle of a batch fetched before the reset applies
nothing and raises LeaseLost. The keepalive thread finds the leases gone at
its next renewal (within ``heartbeat_interval``) and the member's next fetch
raises LeaseLost too; the runtime then rejoins and reads from the new
position.
"""

from __future__ import annotations

from typing import Any, Final

from choreograph.core.broker import PartitionLag, Position
from choreograph.core.group_admin import PartitionReset
from choreograph.core.names import check_group, check_topic

from .keys import Keys, last_delivered_before
from .translation import translated

RESET: Final = """
-- KEYS: leases, generation, groups, then per partition: stream, retries, attempts, resubmitted.
-- ARGV: group, then per partition the new last-delivered id.
local group = ARGV[1]
local call, pcall = redis.call, redis.pcall
for k = 4, #KEYS, 4 do
  local stream, retries, attempts, resubmitted = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local id = ARGV[2 + (k - 4) / 4]
  local kept = {}
  for _, sid in ipairs(call('HKEYS', resubmitted)) do kept[sid] = true end
  local moved = pcall('XGROUP', 'SETID', stream, group, id)
  if type(moved) == 'table' and moved.err then
    call('XGROUP', 'CREATE', stream, group, id, 'MKSTREAM')
  else
    local start = '-'
    while true do
      local page = call('XPENDING', stream, group, start, '+', 1000)
      for _, entry in ipairs(page) do
        if not kept[entry[1]] then call('XACK', stream, group, entry[1]) end
      end
      if #page < 1000 then break end
      start = '(' .. page[#page][1]
    end
    for _, sid in ipairs(call('ZRANGE', retries, 0, -1)) do
      if not kept[sid] then call('ZREM', retries, sid) end
    end
    for _, sid in ipairs(call('HKEYS', attempts)) do
      if not kept[sid] then call('HDEL', attempts, sid) end
    end
  end
end
call('DEL', KEYS[1])
call('INCR', KEYS[2])
call('SADD', KEYS[3], group)
return 1
"""


class GroupReset:
    """The ``GroupAdmin`` half of :class:`~choreograph.brokers.redis.RedisBroker`."""

    client: Any
    keys: Keys

    def check_open(self) -> None:
        raise NotImplementedError  # provided by RedisBroker

    async def _existing_partitions(self, topic: str) -> int:
        raise NotImplementedError  # provided by RedisBroker

    async def start_offsets(self, topic: str, partitions: int, start: Position) -> list[int]:
        raise NotImplementedError  # provided by RedisBroker

    async def _partition_lag(self, topic: str, group: str, p: int) -> PartitionLag:
        raise NotImplementedError  # provided by RedisBroker

    async def reset_group(self, topic: str, group: str, to: Position) -> list[PartitionReset]:
        """Move ``group`` on ``topic`` to ``to`` in one script (see the module)."""
        check_topic(topic), check_group(group)
        self.check_open()
        async with translated(f"reset group {group!r} on {topic!r}"):
            partitions = await self._existing_partitions(topic)
            before = await self.group_positions(topic, group)
            starts = await self.start_offsets(topic, partitions, to)
            g = self.keys.group(topic, group)
            keys = [g.leases, g.generation, self.keys.groups(topic)]
            for p in range(partitions):
                keys += [self.keys.stream(topic, p), g.retries(p), g.attempts(p), g.resubmitted(p)]
            ids = [last_delivered_before(offset) for offset in starts]
            await self.client.eval(RESET, len(keys), *keys, group, *ids)
        return [PartitionReset(topic, group, p, before.get(p), offset) for p, offset in enumerate(starts)]

    async def group_positions(self, topic: str, group: str) -> dict[int, int]:
        """Return partition -> the oldest offset ``group`` has not settled (empty if it never read ``topic``)."""
        self.check_open()
        async with translated(f"read positions of {group!r}"):
            if not await self.client.sismember(self.keys.groups(topic), group):
                return {}
            partitions = await self._existing_partitions(topic)
            return {p: (await self._partition_lag(topic, group, p)).committed for p in range(partitions)}
