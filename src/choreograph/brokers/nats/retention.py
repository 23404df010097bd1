"""Retention of the NATS broker: the streams' ``max_age``, described, and the log measured from stream state.

A topic's stream is created with ``max_age = retention`` (7 days by
default). JetStream deletes by age on its own, whether or not every group
has read a record; a stream that exists keeps the limits it was created with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nats.aio.client import Client

from choreograph.brokers.nats import direct
from choreograph.brokers.nats import naming as n
from choreograph.brokers.nats.config import NatsConfig
from choreograph.core.broker import Position
from choreograph.core.enums import StartKind
from choreograph.core.retention import DEFAULT_RETENTION, LogSize, Retention


def describe(config: NatsConfig) -> Retention:
    """Return the retention ``config`` applies to the streams it creates, for the startup line."""
    how = "stream max_age, enforced by JetStream whether or not groups have read them; existing streams keep theirs"
    return Retention("nats", config.retention, config.retention == DEFAULT_RETENTION, how)


def size(streams: Sequence[Any]) -> LogSize:
    """Return messages and bytes per topic from the streams' state (one listing; reads no messages)."""
    records = {info.config.metadata[n.META_TOPIC]: int(info.state.messages) for info in streams}
    stored = {info.config.metadata[n.META_TOPIC]: int(info.state.bytes) for info in streams}
    return LogSize(records, stored)


async def resolve(
    nc: Client, names: n.Names, topic: str, partitions: int, last_seq: int, start: Position, timeout: float
) -> dict[int, int]:
    """Return partition -> first stream sequence to read for ``start`` (sequences are shared by the partitions)."""
    if start.kind == StartKind.LATEST:
        return dict.fromkeys(range(partitions), last_seq + 1)
    if start.kind == StartKind.OFFSETS:
        return {p: int((start.offsets or {}).get(p, 1)) for p in range(partitions)}
    if start.kind == StartKind.EARLIEST:
        return dict.fromkeys(range(partitions), 1)
    out = {}
    stream = names.stream(topic)
    for p in range(partitions):
        subject = names.partition_subject(topic, p)
        found = await direct.scan_from_time(nc, stream, subject, start_time=start.time or 0.0, limit=1, timeout=timeout)
        out[p] = found[0].seq if found else last_seq + 1
    return out


def duplicate_window(config: NatsConfig) -> float:
    """Return the stream's duplicate window: ``duplicate_window``, shortened to the retention if that is shorter.

    JetStream refuses a window longer than ``max_age``; a record cannot be a
    duplicate of one already deleted by age anyway.
    """
    return config.duplicate_window if config.retention is None else min(config.duplicate_window, config.retention)
