"""Which partition a record goes to: a stable hash of its key, or the next turn for records without one.

Every backend places records the same way, so a topic moved between backends
(or read by another language's client hashing with CRC-32) keeps each key in
the same partition. Records without a key are spread round-robin, per topic,
per :class:`RoundRobin` (one per publishing broker object: turns are not
shared between processes, which only affects how evenly they spread).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable


def partition_for(key: str | None, partitions: int, fallback: int = 0) -> int:
    """Return the partition for ``key``: a stable hash, the same in every process.

    Records without a key go to ``fallback % partitions`` (callers round-robin).
    """
    if key is None:
        return fallback % partitions
    return zlib.crc32(key.encode()) % partitions


class RoundRobin:
    """The partitions of a topic's records: keyed ones by :func:`partition_for`, the others in turn.

    Not thread-safe: use one from one thread (an event loop, or the SQLite writer thread).
    """

    __slots__ = ("_turns",)

    def __init__(self) -> None:
        self._turns: dict[str, int] = {}

    def assign(self, topic: str, keys: Iterable[str | None], partitions: int) -> list[int]:
        """Return the partition of each key, in order; each ``None`` takes the topic's next turn."""
        turn = self._turns.get(topic, 0)
        out: list[int] = []
        append = out.append
        crc32 = zlib.crc32
        for key in keys:
            if key is None:
                append(turn % partitions)
                turn += 1
            else:
                append(crc32(key.encode()) % partitions)
        self._turns[topic] = turn
        return out

    def partition(self, topic: str, key: str | None, partitions: int) -> int:
        """Return the partition of one key (``None`` takes the topic's next turn)."""
        if key is not None:
            return zlib.crc32(key.encode()) % partitions
        turn = self._turns.get(topic, 0)
        self._turns[topic] = turn + 1
        return turn % partitions
