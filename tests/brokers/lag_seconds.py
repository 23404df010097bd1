"""Lag in seconds on a real backend: the age of the oldest record a group has not handled."""

from __future__ import annotations

import time
import uuid

from choreograph.core.broker import Broker, Delivery, LagReporter, LogReader, Position, Record, Settlement
from choreograph.observe.lag_age import lag_seconds

GROUP = "lagsec.handler"


async def _fetch_all(broker: Broker, topic: str, count: int) -> tuple[object, list[Delivery]]:
    sub = await broker.subscribe(topic, GROUP, start=Position.earliest())
    got: list[Delivery] = []
    deadline = time.monotonic() + 30
    while len(got) < count and time.monotonic() < deadline:
        got.extend(await sub.fetch(count, 1.0))
    assert len(got) == count, got
    return sub, got


async def check_lag_seconds(broker: Broker, *, exact: bool = True) -> None:
    """Publish 4 records on one key, handle the first; the age is that of the second (``exact``) or at least it."""
    assert isinstance(broker, LagReporter) and isinstance(broker, LogReader)
    topic = f"lagsec.{uuid.uuid4().hex[:8]}"
    for i in range(4):
        await broker.publish(topic, [Record(str(i).encode(), key="k")])
    sub, got = await _fetch_all(broker, topic, 4)
    first = min(got, key=lambda d: d.offset)
    await sub.settle(Settlement(acks=[first]))  # type: ignore[attr-defined]
    rows = [row for row in await broker.lag(GROUP) if row.topic == topic]
    assert sum(row.lag for row in rows) == 3, rows
    records = sorted(await broker.read(topic, Position.earliest(), limit=100), key=lambda d: d.offset)
    oldest_unhandled, handled = records[1], records[0]
    now = time.time() + 5.0
    ages = await lag_seconds(broker, rows, now)
    [(key, age)] = [(k, v) for k, v in ages.items() if v > 0]
    assert key == (GROUP, topic, first.partition)
    if exact:
        assert abs(age - (now - oldest_unhandled.timestamp)) < 1e-6, (age, now - oldest_unhandled.timestamp)
    else:  # an upper bound: never younger than the truth, never older than the oldest record
        assert now - oldest_unhandled.timestamp - 1e-6 <= age <= now - handled.timestamp + 1e-6
    await sub.close()  # type: ignore[attr-defined]
