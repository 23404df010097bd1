"""NATS reports positions as every backend does, and its observer judges deadlines only against what it read."""

from __future__ import annotations

import uuid

from choreograph import App
from choreograph.brokers.memory import MemoryBroker
from choreograph.brokers.nats import NatsBroker
from choreograph.core.broker import Broker, LagReporter, Record, Settlement, TopicAdmin
from choreograph.observe.flows import MemoryFlowStore
from tests.unit.observe.late_start import observer_started_after_traffic

from .server import NatsServer


async def traffic(broker: Broker) -> None:
    """503 keyed records on one topic and 40 on another (4 partitions each); group g settles 100 of the first."""
    await broker.publish("orders", [Record(f"o{n}".encode(), key=f"k{n % 37}") for n in range(503)])
    await broker.publish("payments", [Record(f"p{n}".encode(), key=f"k{n}") for n in range(40)])
    subscription = await broker.subscribe("orders", "g")
    settled = 0
    while settled < 100:
        batch = list(await subscription.fetch(100 - settled, 5.0))
        await subscription.settle(Settlement(acks=batch))
        settled += len(batch)
    await subscription.close()
    await (await broker.subscribe("payments", "g")).close()


async def positions(broker: Broker) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]]:
    assert isinstance(broker, LagReporter) and isinstance(broker, TopicAdmin)
    lag = [(row.topic, row.partition, row.end_offset) for row in await broker.lag("g")]
    topics = [(info.name, info.records, info.end_offset) for info in await broker.topics()]
    return lag, topics


async def test_lag_and_topics_show_partition_positions_not_stream_sequences(nats_server: NatsServer) -> None:
    # Given the same traffic on NATS (one stream per topic, shared by its partitions) and in memory
    nats = NatsBroker.from_url(f"{nats_server.url}?prefix=pos{uuid.uuid4().hex[:8]}&partitions=4")
    memory = MemoryBroker(partitions=4)
    try:
        await traffic(nats)
        await traffic(memory)
        # When lag and topics are asked for
        got, expected = await positions(nats), await positions(memory)
        lag = await nats.lag("g")
    finally:
        await nats.close()
    # Then each partition's end is its number of records, as in memory, and topics sum them
    assert got == expected
    assert sum(row.end_offset for row in lag if row.topic == "orders") == 503
    assert sum(row.committed for row in lag if row.topic == "orders") == 100
    assert sum(row.lag for row in lag if row.topic == "payments") == 40


async def test_an_observer_started_after_the_traffic_reports_only_the_stuck_instance(nats_server: NatsServer) -> None:
    app = App("late", broker=f"{nats_server.url}?prefix=late{uuid.uuid4().hex[:8]}&partitions=4")
    try:
        await observer_started_after_traffic(app, MemoryFlowStore())
    finally:
        await app.close()
