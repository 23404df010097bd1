"""Consumer lag in seconds: how long the oldest record a group has not handled has waited.

Records behind say how much work is queued; seconds say how late the group
is, which is what a latency target ("handled within 1 s") needs and what the
lag alert uses. For every (group, topic, partition) behind its end, the
record at the group's committed position is read through
:class:`~choreograph.core.broker.LogReader` — one record per lagging
partition, pinned by offsets so no other partition is read — and its append
time subtracted from now. A partition that is caught up is 0 s without a read.

Cost: one ``read(limit=1)`` per lagging (group, partition) per scrape (SQLite:
one indexed query; Redis: one ``XRANGE COUNT 1``; Kafka: one fetch; NATS: one
direct get), none for partitions that are caught up. A scrape stays bounded
by the metrics' scrape timeout.

Offsets are the backend's: on SQLite, memory, Redis and Kafka a group's
committed position and a record's offset are the same count, so the record
read is exactly the oldest unhandled one. On NATS, lag positions count the
partition's records while reads address the stream's shared sequence, so its
rows carry :attr:`~choreograph.core.broker.PartitionLag.oldest_offset` (the
consumer's ack floor + 1) and the broker is a
:class:`~choreograph.core.broker.PartitionReader`: the record read is the
first of the partition after the ack floor, exactly the oldest unhandled one
(one exception, a waiting resubmitted dead letter: see ``NatsBroker.lag``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final

from choreograph.core.broker import LogReader, PartitionLag, PartitionReader, Position

LagKey = tuple[str, str, int]
"""(group, topic, partition)."""

MAX_CONCURRENT_READS: Final = 8


async def lag_seconds(reader: LogReader, rows: Sequence[PartitionLag], now: float) -> dict[LagKey, float]:
    """Return (group, topic, partition) -> seconds the oldest unhandled record has waited.

    0.0 for partitions that are caught up. A partition whose record could not
    be read (trimmed by retention between the two reads, another partition's
    records first) is left out rather than guessed. Raises BrokerError if the
    broker fails.
    """
    ends: dict[str, dict[int, int]] = {}
    for row in rows:
        topic_ends = ends.setdefault(row.topic, {})
        topic_ends[row.partition] = max(topic_ends.get(row.partition, 0), row.end_offset)
    out: dict[LagKey, float] = {}
    behind = []
    for row in rows:
        if row.lag == 0:
            out[(row.group, row.topic, row.partition)] = 0.0
        else:
            behind.append(row)
    gate = asyncio.Semaphore(MAX_CONCURRENT_READS)

    async def age(row: PartitionLag) -> None:
        start = row.committed if row.oldest_offset is None else row.oldest_offset
        async with gate:
            if isinstance(reader, PartitionReader):
                batch = await reader.read_partition(row.topic, row.partition, start, limit=1)
            else:  # every other partition starts at its end, so the only records returned are this partition's
                offsets = {**ends[row.topic], row.partition: start}
                batch = await reader.read(row.topic, Position.at_offsets(offsets), limit=1)
        first = next((d for d in batch if d.partition == row.partition and d.offset >= start), None)
        if first is not None:
            out[(row.group, row.topic, row.partition)] = max(0.0, now - first.timestamp)

    await asyncio.gather(*(age(row) for row in behind))
    return out
