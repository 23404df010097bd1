"""The memory backend proves itself against the conformance suite."""

from choreograph.brokers.memory import MemoryBroker
from choreograph.core.broker import Broker
from choreograph.core.clock import Clock
from choreograph.testing import BrokerConformance


class TestMemoryConformance(BrokerConformance):
    capabilities = MemoryBroker.capabilities
    accepts_clock = True

    async def make_broker(self, clock: Clock | None = None) -> Broker:
        return MemoryBroker.from_url("memory://?partitions=4", clock=clock)


# What the suite cannot see from outside: memory-specific promises.

import asyncio  # noqa: E402

import pytest  # noqa: E402

from choreograph.core.broker import Record, Settlement  # noqa: E402
from choreograph.core.errors import BrokerError, ConfigurationError  # noqa: E402


@pytest.mark.parametrize("url", ["memory://?partitions=0", "memory://?partitions=x", "memory://?colour=red", "mem://"])
def test_a_bad_url_is_refused_with_a_clear_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        MemoryBroker.from_url(url)


def test_the_url_sets_the_partition_count() -> None:
    assert MemoryBroker.from_url("memory://?partitions=7").partitions == 7
    assert MemoryBroker.from_url("memory://").partitions == 4


async def test_a_settlement_that_cannot_be_applied_applies_nothing() -> None:
    # Given a member holding one real delivery
    broker = MemoryBroker()
    await broker.publish("t", [Record(b"a")])
    sub = await broker.subscribe("t", "g")
    (held,) = await sub.fetch(10, 1.0)
    forged = Settlement(acks=[held, held.__class__(held.topic, held.partition, 999, b"x")])
    forged.outputs.append(("out", Record(b"side effect")))
    # When a settlement with a delivery it does not hold is applied
    with pytest.raises(BrokerError):
        await sub.settle(forged)
    # Then neither the ack nor the output happened: the delivery comes back, "out" is empty
    await sub.close()
    other = await broker.subscribe("t", "g")
    (again,) = await other.fetch(10, 1.0)
    assert (again.offset, again.attempt) == (held.offset, 2)
    assert [t.name for t in await broker.topics()] == ["t"]


async def test_a_waiting_fetch_wakes_on_publish_and_on_close() -> None:
    broker = MemoryBroker()
    sub = await broker.subscribe("t", "g")
    loop = asyncio.get_running_loop()
    started = loop.time()
    waiting = asyncio.ensure_future(sub.fetch(10, 30.0))
    await asyncio.sleep(0)
    await broker.publish("t", [Record(b"a")])
    assert len(await waiting) == 1
    waiting = asyncio.ensure_future(sub.fetch(10, 30.0))
    await asyncio.sleep(0)
    await sub.close()
    assert await waiting == []
    assert loop.time() - started < 1.0


async def test_members_split_partitions_and_a_leaver_hands_them_over() -> None:
    broker = MemoryBroker(partitions=4)
    await broker.publish("t", [Record(str(i).encode(), key=f"k{i}") for i in range(40)])
    a = await broker.subscribe("t", "g")
    b = await broker.subscribe("t", "g")
    got_a = await a.fetch(100, 1.0)
    got_b = await b.fetch(100, 1.0)
    assert got_a
    assert got_b
    assert {d.partition for d in got_a}.isdisjoint({d.partition for d in got_b})
    await b.close()
    again = await a.fetch(100, 1.0)
    assert sorted((d.partition, d.offset) for d in again) == sorted((d.partition, d.offset) for d in got_b)
