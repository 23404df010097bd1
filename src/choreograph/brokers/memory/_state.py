"""The in-memory broker's state: the log, each group's unsettled records, stored dead letters.

Plain data shared by :mod:`.broker`, :mod:`.subscription` and
:mod:`.dead_letters`; every change to it happens in those modules, on one
event loop, between two ``await`` points.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from choreograph.core.broker import DeadLetter, Delivery, Position

if TYPE_CHECKING:
    from choreograph.brokers.memory.subscription import MemorySubscription

DEFAULT_PARTITIONS: Final = 4
"""Partitions of every topic unless ``partitions`` says otherwise."""

_MIN_WAIT: Final = 0.001
_EARLIEST: Final = Position.earliest()


@dataclass(frozen=True, slots=True)
class _Entry:
    """One record in a partition of the log."""

    offset: int
    key: str | None
    value: bytes
    headers: Mapping[str, str]
    timestamp: float


@dataclass(slots=True)
class _Pending:
    """A record a group has not settled yet: ready, waiting for a retry, or held by a member."""

    offset: int
    key: str | None
    attempt: int = 0
    due: float = 0.0
    holder: MemorySubscription | None = None
    first_failure: float | None = None
    value: bytes | None = None
    resubmitted: bool = False
    headers: Mapping[str, str] | None = None
    """A resubmitted dead letter's headers (the original ones plus its dead-letter id)."""


@dataclass(slots=True)
class _Topic:
    name: str
    log: list[list[_Entry]]
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        """Wake every fetch waiting on this topic."""
        self.changed.set()
        self.changed = asyncio.Event()


@dataclass(slots=True)
class _Group:
    """One consumer group on one topic."""

    topic: _Topic
    name: str
    cursors: list[int]
    pending: list[dict[int, _Pending]]
    members: list[MemorySubscription] = field(default_factory=list)

    def assigned(self, member: MemorySubscription) -> list[int]:
        """Partitions ``member`` owns: partition p goes to member ``p % len(members)`` in join order."""
        if member not in self.members:
            return []
        index, count = self.members.index(member), len(self.members)
        return [p for p in range(len(self.cursors)) if p % count == index]

    def committed(self, partition: int) -> int:
        """The first offset the group has not settled, ignoring resubmitted dead letters."""
        offsets = [o for o, e in self.pending[partition].items() if not e.resubmitted]
        return min(offsets, default=self.cursors[partition])


@dataclass(slots=True)
class _Stored:
    """A dead letter and where to hand it back."""

    letter: DeadLetter
    topic: str
    group: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    stored_at: float = 0.0
    """Clock time it was stored: ``dead_letter_retention`` counts from here."""


def _delivery(topic: str, partition: int, entry: _Entry) -> Delivery:
    return Delivery(
        topic=topic,
        partition=partition,
        offset=entry.offset,
        value=entry.value,
        key=entry.key,
        headers=dict(entry.headers),
        timestamp=entry.timestamp,
    )
