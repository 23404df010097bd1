"""Deliberately broken backends, for testing the oracle itself.

Each wraps a real :class:`~choreograph.brokers.memory.MemoryBroker` and breaks
exactly one promise, so the conformance suite must fail naming exactly one
anomaly:

- :class:`AckBeforeHandlingBroker` acks on fetch: a failed handler's record is ``lost``;
- :class:`DroppingBroker` silently drops every 100th published record: ``lost``;
- :class:`ReorderingBroker` hands each batch out reversed: ``reordered``;
- :class:`RedeliveringBroker` appends some acked records again: ``delivered_after_ack``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Final

from choreograph.brokers.memory import MemoryBroker
from choreograph.core.broker import Capabilities, Delivery, Position, Record, Settlement, Subscription
from choreograph.core.clock import Clock

_EARLIEST: Final = Position.earliest()


class _ToySubscription:
    def __init__(self, inner: Subscription, broker: ToyBroker) -> None:
        self.inner = inner
        self.broker = broker

    async def fetch(self, max_records: int, timeout: float) -> Sequence[Delivery]:
        return await self.inner.fetch(max_records, timeout)

    async def settle(self, settlement: Settlement) -> None:
        await self.inner.settle(settlement)

    async def seen(self, keys: Sequence[str]) -> set[str]:
        return await self.inner.seen(keys)

    async def close(self) -> None:
        await self.inner.close()


class ToyBroker:
    """A correct broker (it delegates to a MemoryBroker); subclasses break one thing."""

    capabilities: ClassVar[Capabilities] = Capabilities(per_key_order=True, native_delay=True, atomic_settle=True)
    subscription: ClassVar[type[_ToySubscription]] = _ToySubscription

    def __init__(self, clock: Clock | None = None) -> None:
        self.inner = MemoryBroker(clock=clock)
        self.acks = 0

    async def publish(self, topic: str, records: Sequence[Record]) -> None:
        await self.inner.publish(topic, records)

    async def subscribe(self, topic: str, group: str, *, start: Position = _EARLIEST) -> Subscription:
        return self.subscription(await self.inner.subscribe(topic, group, start=start), self)

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


class _AckOnFetch(_ToySubscription):
    async def fetch(self, max_records: int, timeout: float) -> Sequence[Delivery]:
        batch = await self.inner.fetch(max_records, timeout)
        if batch:
            await self.inner.settle(Settlement(acks=list(batch)))
        return batch

    async def settle(self, settlement: Settlement) -> None:
        return None  # everything was acked on fetch already


class AckBeforeHandlingBroker(ToyBroker):
    """Acks every record as it is fetched, before the handler ran."""

    subscription = _AckOnFetch


class DroppingBroker(ToyBroker):
    """Accepts every publish but silently drops every 100th record."""

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__(clock)
        self._count = 0

    async def publish(self, topic: str, records: Sequence[Record]) -> None:
        kept = []
        for record in records:
            self._count += 1
            if self._count % 100:
                kept.append(record)
        await self.inner.publish(topic, kept)


class _Reversed(_ToySubscription):
    async def fetch(self, max_records: int, timeout: float) -> Sequence[Delivery]:
        return list(reversed(await self.inner.fetch(max_records, timeout)))


class ReorderingBroker(ToyBroker):
    """Hands each batch out in reverse, so records of one key come out of order."""

    subscription = _Reversed


class _Redelivering(_ToySubscription):
    async def settle(self, settlement: Settlement) -> None:
        await self.inner.settle(settlement)
        for delivery in settlement.acks:
            self.broker.acks += 1
            if self.broker.acks % 7 == 0:
                record = Record(delivery.value, key=delivery.key, headers=dict(delivery.headers))
                await self.broker.inner.publish(delivery.topic, [record])


class RedeliveringBroker(ToyBroker):
    """Appends every 7th acked record to its topic again, so the group gets it after acking it."""

    subscription = _Redelivering
