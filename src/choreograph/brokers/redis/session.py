"""What a Redis broker and its subscriptions share: the client, key names, scripts, leases and topic sizes.

The broker creates one :class:`RedisSession` and hands it to every
subscription (and its settler), so neither module imports the other's class:
``broker -> subscription -> session`` and ``broker -> session`` only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import redis.asyncio as aioredis

from choreograph.core.broker import ParkLedger, Position, Record
from choreograph.core.clock import Clock
from choreograph.core.enums import StartKind
from choreograph.core.errors import (
    BrokerClosed,
    BrokerError,
    ConfigurationError,
    LeaseLost,
    StorageLost,
    UnknownTopic,
)
from choreograph.core.partitioning import RoundRobin
from choreograph.core.redaction import redact_url
from choreograph.core.storage_marker import StorageMarker

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


_GROUP_GONE: Final = ("NOGROUP", "UNBLOCKED the stream key no longer exists")
"""What Redis answers a read whose group or stream is gone (the latter to a read blocked at the time)."""
_CREATE_EPOCH: Final = "redis.call('SET', KEYS[1], ARGV[1], 'NX') return redis.call('GET', KEYS[1])"


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
            # every new connection (a reconnect after a server restart too) checks the deployment marker first
            options["redis_connect_func"] = self._on_connect
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
        self.storage = StorageMarker(
            self._read_epoch, self._create_epoch, broker=f"Redis at {redact_url(url)}", where=f"key {self.keys.epoch}"
        )
        """The deployment marker: StorageLost once the server lost its data under this broker."""
        self._written: set[str] = set()
        """Partition meta keys this broker published to: a publish finding one missing found a loss."""
        self._partitions: dict[str, int] = {}
        self._round_robin = RoundRobin()

    async def _read_epoch(self) -> str | None:
        async with translated("read the deployment marker"):
            value = await self.client.get(self.keys.epoch)
        return None if value is None else value.decode()

    async def _create_epoch(self, epoch: str) -> str:
        async with translated("store the deployment marker"):
            value = await self.client.eval(_CREATE_EPOCH, 1, self.keys.epoch, epoch)
        return str(value.decode() if isinstance(value, bytes) else value)

    async def _on_connect(self, connection: Any) -> None:
        """redis-py's connect step, then — once this broker saw the marker — a look at it on the new connection."""
        await connection.on_connect()
        if self.storage.epoch is None:
            return
        await connection.send_command("GET", self.keys.epoch)
        value = await connection.read_response()
        self.storage.observe(None if value is None else value.decode(), "a new connection to the server")

    async def judge(self, exc: BrokerError, why: str, topic: str, group: str) -> None:
        """After a lost lease or a missing group: raise StorageLost if the server lost its data, else return.

        A flush or a restart without persistence takes the leases and the Redis consumer groups with it;
        a group gone although the marker holds (deleted by hand, evicted) is a loss all the same.
        """
        if isinstance(exc, LeaseLost):
            await self.verify_quietly(f"{why} in group {group!r} that lost its lease")
        elif any(sign in str(exc) for sign in _GROUP_GONE):
            await self.verify_quietly(f"{why} in group {group!r}")
            raise self.storage.vanished(f"the consumer group {group!r} of topic {topic!r}", why) from exc

    async def verify_quietly(self, why: str) -> None:
        """Verify the marker; an outage meanwhile is no finding (the error being judged stands)."""
        try:
            await self.storage.verify(why)
        except StorageLost:
            raise
        except BrokerError:
            pass

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
        await self.storage.ensure()
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

    async def append_arguments(self, topic: str, records: Sequence[Record], *, expect: bool = False) -> list[Any]:
        """Arguments of the PUBLISH script after its text: key count, keys, then ARGV (see scripts.PUBLISH).

        A publish runs it alone, with ``expect``: the partitions it wrote to
        before must still have their meta (see :meth:`wrote`); a settle runs it
        fenced in its MULTI (the fence's lease check finds a loss there).
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
        args: list[Any] = []
        for p, triples in by_partition.items():
            keys += [self.keys.stream(topic, p), self.keys.stream_meta(topic, p)]
            args += [len(triples) // 3, *triples]
        expected = "".join("1" if meta in self._written else "0" for meta in keys[1::2]) if expect else ""
        return [len(keys), *keys, repr(self.clock.now()), self.config.retention_max_records or 0, expected, *args]

    def wrote(self, arguments: Sequence[Any]) -> None:
        """Remember the partitions a PUBLISH call with ``arguments`` wrote to (their meta now exists)."""
        count = int(arguments[0])
        self._written.update(arguments[2 : 1 + count : 2])

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
