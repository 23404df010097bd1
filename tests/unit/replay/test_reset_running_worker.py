"""A group reset while its worker runs (memory and SQLite): the batch in flight is fenced, the group reads on.

Given a worker whose handler is blocked in the middle of a batch, when the
group is reset to earliest, then the blocked batch's settle is refused — none
of its outputs are published, none of its inbox keys stored — and the worker
rejoins: the events it had handled before are dropped by the inbox (the reset
keeps it), the fenced ones are handled again, and every input has exactly one
output, in per-key order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from choreograph import App, Context, Event
from choreograph.brokers.memory import MemoryBroker
from choreograph.brokers.sqlite import SqliteBroker
from choreograph.core.broker import Broker, LogReader, Position
from choreograph.core.errors import UnknownTopic
from choreograph.core.group_admin import GroupAdmin
from choreograph.runtime.consumer import ConsumerConfig
from tests.conftest import wait_until

KEYS = ("k0", "k1", "k2")


class Tick(Event, type="replay.tick"):
    n: int


class Tock(Event, type="replay.tock"):
    n: int


@pytest.fixture(params=["memory", "sqlite"])
async def broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Broker]:
    opened: Broker = (
        MemoryBroker() if request.param == "memory" else SqliteBroker.from_url(f"sqlite:///{tmp_path}/r.db")
    )
    yield opened
    await opened.close()


async def test_reset_fences_the_batch_in_flight_and_the_worker_reads_on(broker: Broker) -> None:
    await reset_while_blocked(broker)


async def reset_while_blocked(broker: Broker, *, timeout: float = 10.0) -> None:
    """The scenario of this module on ``broker`` (also run by the Redis and NATS tests on real servers)."""
    handled: list[tuple[str, int]] = []
    gate = asyncio.Event()
    gate.set()
    blocked = asyncio.Event()
    app = App("replayer", broker=broker, consumer=ConsumerConfig(resubscribe_delay=0.05, fetch_timeout=0.05))

    @app.service("ticker").on(Tick)
    async def tock(event: Tick, ctx: Context) -> Tock:
        handled.append((ctx.envelope.partitionkey or "", event.n))
        if not gate.is_set():
            blocked.set()
            await gate.wait()
        return Tock(n=event.n)

    group, topic = "ticker.tock", Tick.topic()
    assert isinstance(broker, GroupAdmin) and isinstance(broker, LogReader)
    for n in range(9):
        await app.publish(Tick(n=n), key=KEYS[n % 3])
    await app.start()
    try:
        await wait_until(lambda: len(handled) == 9, what="the first nine handled", timeout=timeout)
        await wait_until(lambda: _committed(broker, group, topic, 9), what="the first nine committed", timeout=timeout)
        gate.clear()
        for n in range(9, 12):
            await app.publish(Tick(n=n), key=KEYS[n % 3])
        await asyncio.wait_for(blocked.wait(), timeout)

        moved = await broker.reset_group(topic, group, Position.earliest())  # while the handler is blocked

        firsts = {d.partition: d.offset for d in reversed(await broker.read(topic, Position.earliest(), limit=100))}
        assert all(r.after <= firsts.get(r.partition, r.after) for r in moved), (moved, firsts)
        gate.set()
        await wait_until(lambda: _outputs(broker, 12), what="one output per input", timeout=timeout)
        await wait_until(lambda: _committed(broker, group, topic, 12), what="everything committed", timeout=timeout)
    finally:
        await app.stop()
    numbers = [n for _, n in handled]
    assert all(numbers.count(n) == 1 for n in range(9)), "the inbox let an event handled before the reset through"
    assert all(1 <= numbers.count(n) <= 2 for n in range(9, 12)), numbers
    assert any(numbers.count(n) == 2 for n in range(9, 12)), "nothing of the fenced batch was handled again"
    produced = await broker.read(Tock.topic(), Position.earliest(), limit=100)
    assert len(produced) == 12, "the fenced batch's outputs were published"
    for key in KEYS:
        seen = [n for k, n in handled if k == key]
        assert seen == sorted(seen), f"per-key order broken for {key}: {seen}"


async def _committed(broker: Broker, group: str, topic: str, total: int) -> bool:
    assert isinstance(broker, GroupAdmin) and isinstance(broker, LogReader)
    records = await broker.read(topic, Position.earliest(), limit=1000)
    ends = {d.partition: d.offset + 1 for d in records}  # offsets are positions within a partition (NATS: sequences)
    positions = await broker.group_positions(topic, group)
    return len(records) == total and all(positions.get(p, 0) >= end for p, end in ends.items())


async def _outputs(broker: Broker, total: int) -> bool:
    assert isinstance(broker, LogReader)
    try:
        return len(await broker.read(Tock.topic(), Position.earliest(), limit=1000)) >= total
    except UnknownTopic:
        return False
