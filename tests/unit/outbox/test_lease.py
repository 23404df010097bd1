"""SQLite relays share one lease: a stalled relay that lost it marks nothing, and order per key survives the overlap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from choreograph import App
from choreograph.brokers.memory import MemoryBroker
from choreograph.core.broker import Broker, Record
from choreograph.outbox import Outbox, Relay, RelayConfig, RelayMetrics, install
from tests.outbox.model import Moved, first_copies_in_order, read_log


class StalledBroker:
    """Publishes to ``inner`` only once ``go`` is set: a relay stuck in its publish."""

    def __init__(self, inner: Broker) -> None:
        self.inner = inner
        self.entered = asyncio.Event()
        self.go = asyncio.Event()

    async def publish(self, topic: str, records: Sequence[Record]) -> None:
        self.entered.set()
        await self.go.wait()
        await self.inner.publish(topic, records)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/service.db")
    await install(engine)
    yield engine
    await engine.dispose()


async def stage(engine: AsyncEngine, box: Outbox, key: str, numbers: range) -> None:
    async with AsyncSession(engine) as session, session.begin():
        for n in numbers:
            await box.publish(session, Moved(key=key, n=n), key=key)


async def test_a_relay_that_stalls_past_its_lease_marks_nothing_and_first_copies_stay_in_order(
    engine: AsyncEngine,
) -> None:
    # Given relay A holding the lease and stuck publishing events 0-4 of key k
    broker = MemoryBroker()
    app = App("orders", broker=broker)
    box = Outbox(app)
    await stage(engine, box, "k", range(5))
    stalled = StalledBroker(broker)
    config = RelayConfig(lease_timeout=0.2)
    relay_a = Relay(engine, stalled, config=config, name="a")  # type: ignore[arg-type]
    a_round = asyncio.create_task(relay_a.ship_once())
    await stalled.entered.wait()
    # When its lease expires, relay B takes over and ships everything, including events staged since
    await stage(engine, box, "k", range(5, 8))
    relay_b = Relay(engine, broker, config=config, name="b")
    while relay_b.shipped < 8:
        await relay_b.ship_once()
        await asyncio.sleep(0.05)  # waiting out A's lease (real time: the lease is wall-clock)
    # And A finally publishes its stale batch
    stalled.go.set()
    # Then A marks nothing (it lost the lease), B's copies came first, and first copies keep the order
    assert await a_round == 0
    log = await read_log(broker, Moved.topic())
    assert len(log) == 13  # B's 8, then A's 5 repeats (same ids: a downstream inbox drops them)
    assert first_copies_in_order(log) == {"k": list(range(8))}
    await app.close()


async def test_relay_metrics_report_throughput_depth_and_age(engine: AsyncEngine) -> None:
    # Given a relay with metrics and three staged events
    app = App("orders", broker=MemoryBroker())
    await stage(engine, Outbox(app), "k", range(3))
    registry = CollectorRegistry()
    relay = Relay(engine, app, metrics=RelayMetrics(registry), config=RelayConfig(batch_size=2))
    # When it runs one round (two events) and reports
    assert await relay.ship_once() == 2
    await relay.report()
    # Then throughput counts two, depth one, and the oldest pending event has an age
    assert registry.get_sample_value("choreograph_outbox_shipped_total") == 2
    assert registry.get_sample_value("choreograph_outbox_depth") == 1
    age = registry.get_sample_value("choreograph_outbox_oldest_age_seconds")
    assert age is not None and age >= 0
    assert registry.get_sample_value("choreograph_outbox_relay_lag_seconds_count") == 2
    await app.close()
