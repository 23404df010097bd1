"""Retention of the Redis broker: trimming records by age, describing it, and measuring the log.

Records older than ``retention`` (7 days by default) are trimmed with
``XTRIM MINID`` by a publishing broker, at most once per
``retention_interval``. Trimming does not wait for slow groups: a trimmed
record that was still pending is dropped when claimed, and one never read
is never delivered. ``retention_max_records`` adds ``XTRIM MAXLEN ~`` on every publish.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from choreograph.core.broker import Position
from choreograph.core.retention import DEFAULT_RETENTION, LogSize, Retention

from .keys import entry_id

if TYPE_CHECKING:
    from .broker import RedisBroker
    from .config import RedisConfig


def describe(config: RedisConfig) -> Retention:
    """Return the retention ``config`` applies, for the startup line."""
    extra = (
        () if config.retention_max_records is None else (f"about {config.retention_max_records} records per partition",)
    )
    how = f"XTRIM MINID every {config.retention_interval:g} s on publish, whether or not groups have read them"
    return Retention("redis", config.retention, config.retention == DEFAULT_RETENTION, how, extra)


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


async def trim_records(broker: RedisBroker, cutoff: float) -> None:
    """Trim every partition stream of every topic below its first record stamped at or after ``cutoff``."""
    registry = await broker.client.hgetall(broker.keys.topics)
    for name in (_text(t) for t in registry):
        partitions = int(registry[name.encode()])
        for p, first in enumerate(await broker.start_offsets(name, partitions, Position.at_time(cutoff))):
            if first > 0:
                await broker.client.xtrim(broker.keys.stream(name, p), minid=entry_id(first), approximate=False)


async def size(broker: RedisBroker) -> LogSize:
    """Return entries (XLEN) and memory (MEMORY USAGE, sampled by Redis) per topic; reads no entries."""
    registry = await broker.client.hgetall(broker.keys.topics)
    names = sorted(_text(t) for t in registry)
    pipe = broker.client.pipeline(transaction=False)
    for name in names:
        for p in range(int(registry[name.encode()])):
            stream = broker.keys.stream(name, p)
            pipe.xlen(stream)
            pipe.memory_usage(stream)
    answers = iter(await pipe.execute())
    records: dict[str, int] = {}
    used: dict[str, int] = {}
    for name in names:
        for _ in range(int(registry[name.encode()])):
            records[name] = records.get(name, 0) + int(next(answers) or 0)
            used[name] = used.get(name, 0) + int(next(answers) or 0)  # None: the stream does not exist yet
    return LogSize(records, used)
