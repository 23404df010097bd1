"""What a replay covers: a bounded range of a topic, a filter, and the plan a dry run prints.

A range is resolved once, when the replay is planned, to a first and an end
offset (exclusive) per partition, so a replay never runs after records
published while it runs, and an interrupted replay resumes within the same
bounds. Offsets are the backend's positions (dense on memory, SQLite, Redis
and Kafka; stream sequences on NATS) — only ever compared within a partition.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

from choreograph.core import codec
from choreograph.core.broker import Broker, Delivery, LogReader, Position
from choreograph.core.enums import StartKind
from choreograph.core.errors import ConfigurationError, DecodeError
from choreograph.core.retention import PositionResolver

PAGE = 500
"""Records asked of the broker per read."""

PAST_END = 1 << 62
"""An offset past any partition's end: a read from it returns nothing (every backend clamps it)."""


@dataclass(frozen=True, slots=True)
class Filter:
    """Which records of the range a replay takes; empty fields take everything.

    ``types`` and ``correlation_id`` are read from the record's envelope, so a
    record that does not decode matches only a filter that names neither.
    """

    types: frozenset[str] = frozenset()
    keys: frozenset[str] = frozenset()
    correlation_id: str | None = None

    @property
    def empty(self) -> bool:
        """True when the filter takes every record."""
        return not (self.types or self.keys or self.correlation_id)

    def accepts(self, delivery: Delivery) -> bool:
        """Return whether ``delivery`` is replayed."""
        if self.keys and delivery.key not in self.keys:
            return False
        if not (self.types or self.correlation_id):
            return True
        try:
            envelope = codec.decode(delivery.value)
        except DecodeError:
            return False
        if self.types and envelope.type not in self.types:
            return False
        return not self.correlation_id or envelope.correlationid == self.correlation_id

    def describe(self) -> dict[str, object]:
        """The filter as a JSON-ready dict (also part of a replay's fingerprint)."""
        return {"types": sorted(self.types), "keys": sorted(self.keys), "correlation_id": self.correlation_id}


@dataclass(frozen=True, slots=True)
class Bounds:
    """A resolved range: partition -> [first, end) offsets."""

    first: Mapping[int, int]
    end: Mapping[int, int]

    def to_doc(self) -> dict[str, dict[str, int]]:
        """Return the bounds as JSON-ready dicts (partition numbers as strings)."""
        return {"first": {str(p): o for p, o in self.first.items()}, "end": {str(p): o for p, o in self.end.items()}}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Mapping[str, int]]) -> Bounds:
        """Read bounds written by :meth:`to_doc`."""
        return cls({int(p): int(o) for p, o in doc["first"].items()}, {int(p): int(o) for p, o in doc["end"].items()})


@dataclass(slots=True)
class PartitionPlan:
    """What a replay would take from one partition."""

    partition: int
    first: int
    end: int
    count: int = 0
    first_time: float | None = None
    last_time: float | None = None

    def to_doc(self) -> dict[str, object]:
        """Return the plan of this partition as a JSON-ready dict."""
        return {
            "partition": self.partition,
            "first_offset": self.first,
            "end_offset": self.end,
            "count": self.count,
            "first_time": self.first_time,
            "last_time": self.last_time,
        }


@dataclass(slots=True)
class Plan:
    """A dry run's answer: per partition what would be replayed, and the total."""

    topic: str
    bounds: Bounds
    partitions: list[PartitionPlan] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Records the replay takes in all."""
        return sum(p.count for p in self.partitions)

    def estimate(self, rate: float | None, measured: float | None = None) -> float | None:
        """Seconds the replay should take: ``total / rate``, or at the ``measured`` rate; None if unknown."""
        speed = rate if rate else measured
        return self.total / speed if speed else None


async def resolve(broker: Broker, topic: str, start: Position, until: float | None) -> Bounds:
    """Resolve ``start`` and an end time (exclusive; None: the log's end now) to offsets per partition."""
    if not isinstance(broker, PositionResolver):
        raise ConfigurationError(f"this broker ({type(broker).__name__}) cannot resolve positions for a replay")
    first = await broker.resolve_position(topic, start)
    end = await broker.resolve_position(topic, Position.latest() if until is None else Position.at_time(until))
    if start.kind == StartKind.OFFSETS and start.offsets:
        for p, offset in start.offsets.items():  # an explicit offset past the end replays nothing
            if p in first:
                first[p] = max(first[p], min(offset, end.get(p, offset)))
    return Bounds(first, {p: max(end.get(p, first[p]), first[p]) for p in first})


def with_end_offsets(bounds: Bounds, end: Mapping[int, int]) -> Bounds:
    """Return ``bounds`` with explicit end offsets (exclusive) where ``end`` names a partition."""
    return Bounds(
        bounds.first, {p: min(bounds.end[p], max(bounds.first[p], end.get(p, bounds.end[p]))) for p in bounds.end}
    )


async def read_range(
    reader: LogReader, topic: str, partition: int, first: int, end: int, partitions: int
) -> AsyncIterator[list[Delivery]]:
    """Yield pages of one partition's records in [first, end), in offset order."""
    cursor = first
    while cursor < end:
        offsets = dict.fromkeys(range(partitions), PAST_END)
        offsets[partition] = cursor
        page = await reader.read(topic, Position.at_offsets(offsets), limit=PAGE)
        taken = [d for d in page if d.partition == partition and cursor <= d.offset < end]
        if not taken:
            return
        cursor = taken[-1].offset + 1
        yield taken
        if len(taken) < len(page) or taken[-1].offset + 1 >= end:
            return


async def plan(broker: Broker, topic: str, bounds: Bounds, accept: Filter) -> Plan:
    """Read the range and count, per partition, what ``accept`` takes (nothing moves)."""
    if not isinstance(broker, LogReader):
        raise ConfigurationError(f"this broker ({type(broker).__name__}) cannot read its log; replay needs LogReader")
    out = Plan(topic, bounds)
    count = len(bounds.first)
    for p in sorted(bounds.first):
        part = PartitionPlan(p, bounds.first[p], bounds.end[p])
        async for page in read_range(broker, topic, p, part.first, part.end, count):
            for delivery in page:
                if accept.accepts(delivery):
                    part.count += 1
                    part.first_time = delivery.timestamp if part.first_time is None else part.first_time
                    part.last_time = delivery.timestamp
        out.partitions.append(part)
    return out


async def record_offsets(broker: Broker, topic: str, bounds: Bounds) -> dict[int, list[int]]:
    """Read the range and return the offset of every record in it, per partition, ascending.

    Progress is counted in records, not offset differences: NATS offsets are
    stream sequences shared by the partitions, so they are not dense.
    """
    if not isinstance(broker, LogReader):
        raise ConfigurationError(f"this broker ({type(broker).__name__}) cannot read its log; replay needs LogReader")
    out: dict[int, list[int]] = {}
    for p in sorted(bounds.first):
        out[p] = [
            d.offset
            async for page in read_range(broker, topic, p, bounds.first[p], bounds.end[p], len(bounds.first))
            for d in page
        ]
    return out


def records_before(offsets: Mapping[int, Sequence[int]], positions: Mapping[int, int]) -> int:
    """How many of ``offsets`` (per partition, ascending) lie before each partition's position (0 if none)."""
    return sum(bisect.bisect_left(found, positions.get(p, 0)) for p, found in offsets.items())


def check_rate(rate: float | None) -> float | None:
    """Refuse a rate that is not a positive number of events per second."""
    if rate is not None and (not math.isfinite(rate) or rate <= 0):
        raise ConfigurationError(f"--rate must be a positive number of events per second, got {rate}")
    return rate
