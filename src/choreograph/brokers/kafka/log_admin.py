"""The Kafka broker's log admin: positions, topics, end offsets, lag, reading the log, retention and log size.

A mixin of :class:`~choreograph.brokers.kafka.KafkaBroker` (the
``LagReporter``, ``TopicAdmin`` and ``LogReader`` halves), kept apart so the
broker module stays readable.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from choreograph.core.broker import Delivery, PartitionLag, Position, TopicInfo
from choreograph.core.enums import StartKind
from choreograph.core.errors import BrokerUnavailable
from choreograph.core.retention import LogSize, Retention

from . import retention
from .config import KafkaConfig
from .state import StateTable
from .translation import to_delivery, translated

_EARLIEST: Final = Position.earliest()


class LogAdmin:
    """The log-reading, lag and topic half of :class:`KafkaBroker`."""

    config: KafkaConfig
    _reader: AIOKafkaConsumer | None
    _read_lock: asyncio.Lock

    def consumer_options(self) -> dict[str, Any]:
        raise NotImplementedError  # provided by KafkaBroker

    async def producer(self) -> AIOKafkaProducer:
        raise NotImplementedError  # provided by KafkaBroker

    async def state(self, *, fresh: bool = True) -> StateTable:
        raise NotImplementedError  # provided by KafkaBroker

    async def partitions(self, topic: str, *, create: bool = True) -> int:
        raise NotImplementedError  # provided by KafkaBroker

    # -- positions ------------------------------------------------------------

    async def start_offsets(
        self, consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition], start: Position
    ) -> dict[TopicPartition, int]:
        """Return the first offset to read per partition for ``start``."""
        begin = await consumer.beginning_offsets(list(tps))
        end = await self.end_offsets(list(tps))  # checked by reading: Tansu's own answer can stop mid-batch
        if start.kind == StartKind.EARLIEST:
            return dict(begin)
        if start.kind == StartKind.LATEST:
            return dict(end)
        if start.kind == StartKind.OFFSETS:
            offsets = start.offsets or {}
            return {tp: min(max(begin[tp], offsets.get(tp.partition, 0)), end[tp]) for tp in tps}
        when = start.time if start.time is not None else 0.0
        wanted = math.ceil(when * 1000)
        found = await consumer.offsets_for_times(dict.fromkeys(tps, wanted))
        out = {}
        for tp in tps:
            answer = found.get(tp)
            if answer is None:
                out[tp] = end[tp]
            elif await self._first_at_or_after(consumer, tp, answer.offset, wanted, begin[tp], end[tp]):
                out[tp] = answer.offset
            else:  # the broker has no time index (Tansu answers offset 0): binary-search the log
                out[tp] = await self._search(consumer, tp, wanted, begin[tp], end[tp])
        return out

    async def _first_at_or_after(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, wanted: int, low: int, high: int
    ) -> bool:
        """Return whether ``offset`` is the first record with timestamp >= ``wanted``, checked by reading.

        The broker's answer alone is not trusted: Tansu answers offset 0 with an
        unrelated timestamp (its own clock, or -1) whatever the time asked.
        """
        if offset < low or offset > high:
            return False
        if offset < high:
            at = await self._record_from(consumer, tp, offset)
            if at is None or at.timestamp < wanted:
                return False
        if offset > low:
            before = await self._record_from(consumer, tp, offset - 1)
            if before is not None and before.offset < offset and before.timestamp >= wanted:
                return False
        return True

    @staticmethod
    async def _record_from(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> Any:
        """Return the first record at or after ``offset``, or None if none came within a second."""
        consumer.seek(tp, offset)
        batch = await consumer.getmany(tp, timeout_ms=1000, max_records=1)
        messages = batch.get(tp, [])
        return messages[0] if messages else None

    async def _search(self, consumer: AIOKafkaConsumer, tp: TopicPartition, wanted: int, low: int, high: int) -> int:
        """Return the first offset in [low, high) with timestamp >= ``wanted`` (timestamps assumed ordered)."""
        while low < high:
            middle = (low + high) // 2
            found = await self._record_from(consumer, tp, middle)
            if found is None:
                high = middle
            elif found.timestamp >= wanted:
                high = min(middle, found.offset)
            else:
                low = found.offset + 1
        return low

    # -- LagReporter, TopicAdmin, LogReader -----------------------------------

    async def topics(self) -> list[TopicInfo]:
        """Return every topic except internal ones (``__`` prefix), sorted by name."""
        await self.producer()
        assert self._reader is not None
        async with translated("list topics"), self._read_lock:
            names = sorted(t for t in await self._reader.topics() if not t.startswith("__"))
            out = []
            for name in names:
                tps = [TopicPartition(name, p) for p in range(await self.partitions(name, create=False))]
                begin = await self._reader.beginning_offsets(tps)
                end = await self.end_offsets(tps)
                out.append(TopicInfo(name, len(tps), sum(end[tp] - begin[tp] for tp in tps), sum(end.values())))
        return out

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """Return the offset after the last record of each partition.

        Checked by reading the last record batch: Tansu answers ``ListOffsets(latest)``
        with the base offset of the last batch + 1, which undercounts batched records.
        """
        consumer = AIOKafkaConsumer(**self.consumer_options())
        await consumer.start()
        try:
            consumer.assign(list(tps))
            end = dict(await consumer.end_offsets(list(tps)))
            for tp in tps:
                if end[tp] > 0:
                    consumer.seek(tp, end[tp] - 1)
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    end[tp] = max([end[tp], *(m.offset + 1 for m in batch.get(tp, []))])
            return end
        finally:
            await consumer.stop()

    async def lag(self, group: str | None = None) -> list[PartitionLag]:
        """Return ``end offset - committed offset`` per (topic, group, partition) of registered groups."""
        state = await self.state()
        pairs = sorted(tuple(k.split("|", 2)[1:]) for k in state.rows if k.startswith("group|"))
        out: list[PartitionLag] = []
        for topic, name in pairs:
            if group is not None and name != group:
                continue
            count = await self.partitions(topic, create=False)
            tps = [TopicPartition(topic, p) for p in range(count)]
            consumer = AIOKafkaConsumer(**self.consumer_options(), group_id=name)
            async with translated(f"read lag of {name!r}"):
                await consumer.start()
                try:
                    end = await self.end_offsets(tps)
                    for tp in tps:
                        committed = await consumer.committed(tp)
                        out.append(PartitionLag(topic, name, tp.partition, end[tp], committed or 0))
                finally:
                    await consumer.stop()
        return out

    async def read(self, topic: str, start: Position = _EARLIEST, *, limit: int = 1000) -> list[Delivery]:
        """Return up to ``limit`` records from ``start`` in (partition, offset) order. Does not wait for new ones.

        Offsets are positions in the log, a resubmitted dead letter's too, so a
        read continued from the last offset + 1 always moves forward.
        """
        count = await self.partitions(topic, create=False)
        tps = [TopicPartition(topic, p) for p in range(count)]
        consumer = AIOKafkaConsumer(**self.consumer_options())
        out: list[Delivery] = []
        async with translated(f"read {topic!r}"):
            await consumer.start()
            try:
                consumer.assign(tps)
                firsts = await self.start_offsets(consumer, tps, start)
                # checked by reading: Tansu's own answer can stop mid-batch, and a read on from there got nothing
                end = await self.end_offsets(tps)
                named = (start.offsets or {}) if start.kind == "offsets" else {}
                for tp in tps:  # an offset at or past the end (``DONE`` markers) stays there, not at Tansu's answer
                    if tp.partition in named:
                        firsts[tp] = min(max(firsts[tp], named[tp.partition]), end[tp])
                deadline = asyncio.get_running_loop().time() + self.config.request_timeout
                for tp in tps:
                    consumer.seek(tp, firsts[tp])
                    while len(out) < limit and await consumer.position(tp) < end[tp]:
                        if asyncio.get_running_loop().time() > deadline:
                            raise BrokerUnavailable(f"kafka did not return {topic!r} records up to the end offsets")
                        batch = await consumer.getmany(tp, timeout_ms=200, max_records=limit - len(out))
                        # not cut at the end offset: Tansu reports the base offset of the last batch + 1
                        out.extend(to_delivery(m, log_offset=True) for m in batch.get(tp, [])[: limit - len(out)])
            finally:
                await consumer.stop()
        return out

    # -- retention (see .retention) ---------------------------------------------

    def describe_retention(self) -> Retention:
        """Return the retention of the topics this broker creates (``retention``, 7 days by default); no I/O."""
        return retention.describe(self.config)

    async def log_size(self) -> LogSize:
        """Return retained records per topic (end minus beginning offsets); reads no payloads but the last batch."""
        return LogSize({info.name: info.records for info in await self.topics()})

    async def resolve_position(self, topic: str, start: Position) -> dict[int, int]:
        """Return partition -> first offset to read for ``start``."""
        tps = [TopicPartition(topic, p) for p in range(await self.partitions(topic, create=False))]
        if start.kind == StartKind.LATEST:
            async with translated(f"resolve a position in {topic!r}"):
                return {tp.partition: offset for tp, offset in (await self.end_offsets(tps)).items()}
        consumer = AIOKafkaConsumer(**self.consumer_options())
        async with translated(f"resolve a position in {topic!r}"):
            await consumer.start()
            try:
                consumer.assign(tps)
                firsts = await self.start_offsets(consumer, tps, start)
            finally:
                await consumer.stop()
        return {tp.partition: offset for tp, offset in firsts.items()}
