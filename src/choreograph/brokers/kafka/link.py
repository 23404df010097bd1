"""What a Kafka subscription uses of its broker, as a protocol: the subscription never imports the broker.

:class:`~choreograph.brokers.kafka.broker.KafkaBroker` satisfies :class:`BrokerLink`
structurally and hands itself to each subscription it creates, so the imports
run one way: ``broker -> subscription -> link``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition

from choreograph.core.broker import DeadLetter, ParkLedger, Position, Record
from choreograph.core.clock import Clock

from .config import KafkaConfig
from .state import StateTable


class BrokerLink(Protocol):
    """The broker side of a subscription: settings, clock, topics, offsets, the producer and the state table."""

    config: KafkaConfig
    clock: Clock
    parked: ParkLedger
    """Records whose dead letter could not be written, parked (see ``KafkaSubscription.settle``)."""

    def consumer_options(self) -> dict[str, Any]:
        """Keyword arguments every consumer of this broker is built with."""
        ...

    async def state(self, *, fresh: bool = True) -> StateTable:
        """The state table (inbox keys, retry attempts, dead letters)."""
        ...

    async def partitions(self, topic: str, *, create: bool = True) -> int:
        """The partition count of ``topic``."""
        ...

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The offset after the last record of each partition."""
        ...

    async def start_offsets(
        self, consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition], start: Position
    ) -> dict[TopicPartition, int]:
        """The first offset to read per partition for ``start``."""
        ...

    async def send(
        self,
        topic: str,
        records: Sequence[Record],
        *,
        partition: int | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        """Produce ``records`` and wait for every acknowledgement."""
        ...

    async def store_dead_letters(self, letters: Sequence[DeadLetter]) -> list[tuple[str, bytes | None]]:
        """The state rows that store ``letters``."""
        ...

    def forget(self, subscription: object) -> None:
        """Drop a closed subscription from the broker's set."""
        ...
