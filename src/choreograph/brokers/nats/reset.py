"""The NATS broker's group reset (:class:`~choreograph.core.group_admin.GroupAdmin`).

JetStream cannot move a durable consumer's position, so a reset replaces the
group's consumer of each partition, after fencing the members off it:

1. it takes every partition lease of the group for itself (a plain write of
   the lease entry): members' compare-and-set renewals fail from then on, and
   nobody takes an entry that exists;
2. if a member held one, it waits ``lease_timeout``: by the lease rule (a member holds a partition
   for ``lease_timeout`` after its last successful renewal) no member holds
   one any more, and every settle after that raises LeaseLost and applies
   nothing (the runtime rejoins);
3. it deletes each partition's durable consumer and creates it again at the
   resolved stream sequence (``BY_START_SEQUENCE``), checking that the
   consumer in place is the one it asked for;
4. it deletes its lease entries, so the members take the partitions again.

Fencing first matters: an acknowledgement names the consumer, and one made by
a member of the old position would reach the new consumer of the same name,
which JetStream takes as a reason to skip ahead. So a NATS reset of a group
with live members takes ``lease_timeout`` (6 s by default); settles made during that wait, before the
members noticed, apply to the old consumer and are discarded with it. Retry
bookkeeping entries of the old position stay until they expire with the
inbox; a resubmitted dead letter not handled yet is kept only if the new
position is at or before it in the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any, Final

import nats.js.errors
from nats.aio.client import Client
from nats.js import api
from nats.js.client import JetStreamContext

from choreograph.brokers.nats import direct
from choreograph.brokers.nats import naming as n
from choreograph.brokers.nats.config import NatsConfig
from choreograph.brokers.nats.translation import translated
from choreograph.core.broker import Position
from choreograph.core.errors import BrokerError
from choreograph.core.group_admin import PartitionReset
from choreograph.core.names import check_group, check_topic

_ATTEMPTS: Final = 5
"""Times a partition's consumer is replaced before the reset gives up (members keep re-creating it)."""


class GroupReset:
    """The ``GroupAdmin`` half of :class:`~choreograph.brokers.nats.NatsBroker`."""

    config: NatsConfig
    names: n.Names

    @property
    def connection(self) -> Client:
        raise NotImplementedError  # provided by NatsBroker

    async def _ready(self) -> JetStreamContext:
        raise NotImplementedError  # provided by NatsBroker

    async def _topic(self, topic: str, *, create: bool = True) -> int:
        raise NotImplementedError  # provided by NatsBroker

    async def resolve_position(self, topic: str, start: Position) -> dict[int, int]:
        raise NotImplementedError  # provided by NatsBroker (log_admin)

    async def _consumer(self, js: JetStreamContext, topic: str, group: str, partition: int, start: Position) -> None:
        raise NotImplementedError  # provided by NatsBroker

    async def reset_group(self, topic: str, group: str, to: Position) -> list[PartitionReset]:
        """Replace ``group``'s consumers on ``topic`` to start at ``to`` (see the module)."""
        check_topic(topic), check_group(group)
        partitions = await self._topic(topic, create=False)
        js = await self._ready()
        before = await self.group_positions(topic, group)
        starts = await self.resolve_position(topic, to)
        pair = self.names.pair(topic, group)
        leases = [f"$KV.{self.names.lease_bucket}.{pair}.p.{p}" for p in range(partitions)]
        holder = f"reset:{uuid.uuid4().hex}".encode()
        timeout = self.config.request_timeout
        with translated(f"reset group {group!r} on {topic!r}"):
            bucket = self.names.lease_bucket
            held = await direct.last_values(self.connection, f"KV_{bucket}", [f"$KV.{bucket}.{pair}.p.*"], timeout)
            for subject in leases:
                await js.publish(subject, holder, timeout=timeout)
            if any(not entry.deleted for entry in held.values()):
                await asyncio.sleep(self.config.lease_timeout)  # the lease rule's bound: no member holds one now
            for subject in leases:
                await js.publish(subject, holder, timeout=timeout)  # renewed: they must not expire meanwhile
            for p in range(partitions):
                await self._replace(js, topic, group, p, max(1, starts[p]))
            for subject in leases:
                await js.publish(subject, b"", headers={direct.KV_OPERATION: "DEL"}, timeout=timeout)
        return [PartitionReset(topic, group, p, before.get(p), starts[p]) for p in range(partitions)]

    async def _replace(self, js: JetStreamContext, topic: str, group: str, partition: int, sequence: int) -> None:
        stream, name = self.names.stream(topic), self.names.consumer(group, partition)
        for _ in range(_ATTEMPTS):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_consumer(stream, name)
            await self._consumer(js, topic, group, partition, Position.at_offsets({partition: sequence}))
            info: Any = await js.consumer_info(stream, name)
            config = info.config
            if config.deliver_policy == api.DeliverPolicy.BY_START_SEQUENCE and config.opt_start_seq == sequence:
                return
        raise BrokerError(
            f"could not reset {group!r} on {topic!r} partition {partition}: members kept re-creating its consumer"
        )

    async def group_positions(self, topic: str, group: str) -> dict[int, int]:
        """Return partition -> the stream sequence after ``group``'s ack floor (empty if it never read ``topic``)."""
        partitions = await self._topic(topic, create=False)
        js = await self._ready()
        stream = self.names.stream(topic)
        out: dict[int, int] = {}
        with translated(f"read positions of {group!r}"):
            for p in range(partitions):
                try:
                    info: Any = await js.consumer_info(stream, self.names.consumer(group, p))
                except nats.js.errors.NotFoundError:
                    continue
                floor = info.ack_floor.stream_seq if info.ack_floor else 0
                start = info.config.opt_start_seq or 1
                out[p] = max(start, floor + 1)
        return out
