"""What a Redis broker and its subscriptions share: the client, key names, scripts, leases and topic sizes.

The broker creates one :class:`RedisSession` and hands it to every
subscription (and its settler), so neither module imports the other's class:
``broker -> subscription -> session`` and ``broker -> session`` only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from choreograph.core.broker import ParkLedger, Position, Record
from choreograph.core.clock import Clock
from choreograph.core.enums import StartKind
from choreograph.core.errors import BrokerClosed, ConfigurationError, UnknownTopic
from choreograph.core.partitioning import RoundRobin

from . import records as rec
from . import scripts
from .config import RedisConfig
from .connection import client_options, connection_class
from .keys import Keys, entry_id, offset_of
from .leases import Keepalive
from .translation import translated


def due_ms(now: float, delay: float) -> int:
    """Return the due time in integer milliseconds."""
    return math.ceil((now + delay) * 1000)


def _raw_reply(response: Any, **options: Any) -> Any:
    return response


class RedisSession:
    """One broker's connection pool and the state its subscriptions read: open or closed, topics' partitions."""

    def __init__(self, url: str, config: RedisConfig, clock: Clock, client: Any = None) -> None:
        self.url = url
        self.config = config
        self.clock = clock
        self.keys = Keys(config.prefix)
        self.owns_client = client is None
        """Whether the broker made the client (and closes it): a client handed in stays its owner's."""
        if client is None:
            # typed as Any: redis-py's response types depend on decode_responses/RESP version at run time
            options: dict[str, Any] = {}
            packing = connection_class(url)
            if packing is not None:
                options["connection_class"] = packing
            client = aioredis.Redis.from_url(
                url,
                **options,
                decode_responses=False,
                socket_connect_timeout=config.connect_timeout,
                health_check_interval=30,
                **client_options(url, config),
            )
        elif client.get_connection_kwargs().get("decode_responses"):
            raise ConfigurationError("a redis client handed to the broker must have decode_responses=False")
        self.client: Any = client
        # Read replies of XREADGROUP are parsed by the subscription itself (records.flat_entry_deliveries).
        self.client.set_response_callback("XREADGROUP", _raw_reply)
        self.heartbeat_script = self.client.register_script(scripts.HEARTBEAT)
        self.leave_script = self.client.register_script(scripts.LEAVE)
        self.resubmit_script = self.client.register_script(scripts.RESUBMIT)
        self.purge_script = self.client.register_script(scripts.PURGE)
        self.keepalive = Keepalive(url, config)
        """Renews the leases of this broker's members off the event loop (see :mod:`.leases`)."""
        self.subscriptions: set[Any] = set()
        """Open subscriptions, closed with the broker."""
        self.parked = ParkLedger()
        """Records whose dead letter the server refused, parked (see ``settling.Settler.write``)."""
        self.closed = False
        self._partitions: dict[str, int] = {}
        self._round_robin = RoundRobin()

    def check_open(self) -> None:
        """Raise BrokerClosed after the broker's ``close``."""
        if self.closed:
            raise BrokerClosed("the redis broker is closed")

    def forget(self, subscription: object) -> None:
        """Drop a closed subscription."""
        self.subscriptions.discard(subscription)

    async def partitions(self, topic: str) -> int:
        """Return the partition count of ``topic``, registering it with the configured count if new."""
        known = self._partitions.get(topic)
        if known is not None:
            return known
        async with translated(f"register topic {topic!r}"):
            await self.client.hsetnx(self.keys.topics, topic, self.config.partitions)
            count = int(await self.client.hget(self.keys.topics, topic) or self.config.partitions)
        self._partitions[topic] = count
        return count

    async def existing_partitions(self, topic: str) -> int:
        """Return the partition count of ``topic``; raise UnknownTopic if it was never registered."""
        if topic in self._partitions:
            return self._partitions[topic]
        raw = await self.client.hget(self.keys.topics, topic)
        if raw is None:
            raise UnknownTopic(f"topic {topic!r} does not exist")
        self._partitions[topic] = int(raw)
        return int(raw)

    async def append_arguments(self, topic: str, records: Sequence[Record]) -> list[Any]:
        """Arguments of the PUBLISH script after its text: key count, keys, then ARGV (see scripts.PUBLISH).

        A publish runs it alone; a settle runs it fenced in its MULTI.
        """
        partitions = await self.partitions(topic)
        by_partition: dict[int, list[bytes | str]] = {}
        for record in records:
            if not isinstance(record.value, bytes):
                raise ConfigurationError(f"a record value must be bytes, got {type(record.value).__name__}")
        placed = self._round_robin.assign(topic, [record.key for record in records], partitions)
        for p, record in zip(placed, records, strict=True):
            by_partition.setdefault(p, []).extend(
                (rec.encode_key(record.key), record.value, rec.encode_headers(record.headers))
            )
        keys: list[str] = []
        args: list[Any] = [repr(self.clock.now()), self.config.retention_max_records or 0]
        for p, triples in by_partition.items():
            keys += [self.keys.stream(topic, p), self.keys.stream_meta(topic, p)]
            args += [len(triples) // 3, *triples]
        return [len(keys), *keys, *args]

    async def start_offsets(self, topic: str, partitions: int, start: Position) -> list[int]:
        """Return the first offset to read per partition for ``start``."""
        if start.kind == StartKind.EARLIEST:
            return [0] * partitions
        pipe = self.client.pipeline(transaction=False)
        for p in range(partitions):
            pipe.hget(self.keys.stream_meta(topic, p), "n")
        ends = [int(n or 0) for n in await pipe.execute()]
        if start.kind == StartKind.LATEST:
            return ends
        if start.kind == StartKind.OFFSETS:
            offsets = start.offsets or {}
            return [min(max(0, offsets.get(p, 0)), ends[p]) for p in range(partitions)]
        when = start.time if start.time is not None else 0.0
        return [await self._offset_at(topic, p, when, ends[p]) for p in range(partitions)]

    async def _offset_at(self, topic: str, p: int, when: float, end: int) -> int:
        """Binary-search the first offset with timestamp >= ``when`` (timestamps never decrease)."""
        stream = self.keys.stream(topic, p)
        first = await self.client.xrange(stream, "-", "+", count=1)
        low, high = (offset_of(first[0][0]) if first else end), end
        while low < high:
            middle = (low + high) // 2
            entry = await self.client.xrange(stream, entry_id(middle), "+", count=1)
            if not entry:
                high = middle
                continue
            found = offset_of(entry[0][0])
            if float(entry[0][1].get(b"t", b"0")) >= when:
                high = min(middle, found)
            else:
                low = found + 1
        return low
