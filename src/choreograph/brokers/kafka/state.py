"""The state topic: a compacted Kafka topic read into memory as a key -> value table.

Kafka has no key-value store, so the broker keeps its own small state in one
compacted topic (one partition, so one order): inbox keys of each group,
attempt counts and retry due times of records that failed, dead letters, and
which groups read which topics. Every process reads the whole topic once and
then tails it; :meth:`StateTable.refresh` catches up to the end offset, so a
read after a write of any process sees it. A ``None`` value is a tombstone.

Key namespaces: ``inbox|<group>|<dedupe key>``, ``retry|<group>|<topic>|<p>|<offset>``,
``dl|<id>``, ``group|<topic>|<group>``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition


class StateTable:
    """The state topic as a dict, kept up to date on demand. Safe to use concurrently from one event loop."""

    def __init__(self, consumer: AIOKafkaConsumer, producer: Any, topic: str) -> None:
        self._consumer = consumer
        self._producer = producer
        self._tp = TopicPartition(topic, 0)
        self.topic = topic
        self.rows: dict[str, bytes] = {}
        self._lock = asyncio.Lock()
        self._started = False

    async def refresh(self) -> None:
        """Read every write made before this call (by any process)."""
        async with self._lock:
            if not self._started:
                self._consumer.assign([self._tp])
                await self._consumer.seek_to_beginning(self._tp)
                self._started = True
            end = (await self._consumer.end_offsets([self._tp]))[self._tp]
            while await self._consumer.position(self._tp) < end:
                batch = await self._consumer.getmany(self._tp, timeout_ms=200, max_records=10_000)
                for message in batch.get(self._tp, []):
                    key = message.key.decode()
                    if message.value is None:
                        self.rows.pop(key, None)
                    else:
                        self.rows[key] = message.value

    async def write(self, rows: Iterable[tuple[str, bytes | None]]) -> None:
        """Append ``rows`` (``None`` deletes) and wait until the broker acknowledged all of them."""
        futures = [await self._producer.send(self.topic, value, key=key.encode(), partition=0) for key, value in rows]
        if futures:
            await asyncio.gather(*futures)
