"""The producer outbox against real databases: staged with the business rows, shipped after commit, in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import create_engine, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from choreograph.brokers.memory import MemoryBroker
from choreograph.core import codec
from choreograph.outbox import Outbox, Relay, RelayConfig, install
from choreograph.outbox.tables import outbox as outbox_table
from choreograph.runtime.app import App
from tests.conftest import wait_until

from .model import Moved, first_copies_in_order, ledger, read_log

TOPIC = Moved.topic()


@pytest.fixture
async def app() -> AsyncIterator[App]:
    app = App("orders", broker=MemoryBroker())
    yield app
    await app.close()


async def pending(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(outbox_table.c.position).where(outbox_table.c.shipped_at.is_(None)))).all()
    return len(rows)


async def test_a_committed_unit_of_work_ships_its_events_and_a_rolled_back_one_ships_none(
    engine: AsyncEngine, app: App
) -> None:
    # Given an outbox and a relay
    box = Outbox(app)
    relay = Relay(engine, app, config=RelayConfig(poll_interval=30.0))
    # When one transaction commits a ledger row with its event, and another rolls back
    async with AsyncSession(engine) as session, session.begin():
        await session.execute(insert(ledger).values(event_id="e1", amount=5))
        kept = await box.publish(session, Moved(key="a", n=1), key="a")
    async with AsyncSession(engine) as session, session.begin():
        await session.execute(insert(ledger).values(event_id="e2", amount=7))
        await box.publish(session, Moved(key="a", n=2), key="a")
        await session.rollback()
    assert await read_log(app.broker, TOPIC) == []
    shipped = await relay.ship_once()
    # Then only the committed event reaches the broker, with the id and bytes it was staged with
    assert shipped == 1
    log = await read_log(app.broker, TOPIC)
    assert [env.id for env in log] == [kept.id]
    assert codec.encode(log[0]) == codec.encode(kept)
    assert log[0].partitionkey == "a" and log[0].correlationid == kept.id
    assert await pending(engine) == 0
    assert await relay.ship_once() == 0  # shipped once, marked


async def test_a_synchronous_session_stages_in_its_transaction(db_url: str, engine: AsyncEngine, app: App) -> None:
    # Given a synchronous engine on the same database (psycopg 3 sync driver, or pysqlite)
    sync_url = db_url.replace("+psycopg_async", "+psycopg").replace("+aiosqlite", "")
    sync_engine = create_engine(sync_url)
    box = Outbox(app)
    try:
        # When a synchronous unit of work commits an event
        with Session(sync_engine) as session, session.begin():
            session.execute(insert(ledger).values(event_id="s1", amount=1))
            staged = box.publish_sync(session, Moved(key="k", n=1), key="k")
    finally:
        sync_engine.dispose()
    # Then the relay ships it
    assert await Relay(engine, app).ship_once() == 1
    assert [env.id for env in await read_log(app.broker, TOPIC)] == [staged.id]


async def test_two_relays_lose_nothing_and_keep_each_keys_order(engine: AsyncEngine, app: App) -> None:
    # Given two relays on one outbox, running while producers commit events of 12 keys concurrently
    keys, per_key = [f"k{i}" for i in range(12)], 30
    box = Outbox(app)
    config = RelayConfig(batch_size=7, lanes_per_round=2, poll_interval=0.02, lease_timeout=0.5)
    relays = [Relay(engine, app, config=config, name=f"relay-{i}") for i in range(2)]
    for relay in relays:
        box.on_commit(relay.wake)
    stop = asyncio.Event()
    running = [asyncio.create_task(relay.run(stop)) for relay in relays]

    async def produce(key: str) -> None:
        for n in range(per_key):
            async with AsyncSession(engine) as session, session.begin():
                await box.publish(session, Moved(key=key, n=n), key=key)

    try:
        # When every producer has committed and the outbox is drained
        await asyncio.gather(*(produce(key) for key in keys))
        await wait_until(lambda: pending_zero(engine), timeout=60, what="outbox drained")
    finally:
        stop.set()
        await asyncio.gather(*running)
    # Then every event is in the log, and each key's first copies are in the order they were committed
    log = await read_log(app.broker, TOPIC)
    assert len({env.id for env in log}) == len(keys) * per_key
    assert first_copies_in_order(log) == {key: list(range(per_key)) for key in keys}
    assert sum(relay.shipped for relay in relays) >= len(keys) * per_key
    if engine.dialect.name == "postgresql":  # lanes: both relays took part
        assert all(relay.shipped > 0 for relay in relays), [relay.shipped for relay in relays]


async def pending_zero(engine: AsyncEngine) -> bool:
    return await pending(engine) == 0


async def test_cleanup_deletes_shipped_rows_past_retention_only(engine: AsyncEngine, app: App) -> None:
    # Given two shipped events and one pending
    box = Outbox(app)
    relay = Relay(engine, app, config=RelayConfig(retention=60.0))
    async with AsyncSession(engine) as session, session.begin():
        await box.publish(session, Moved(key="a", n=1), key="a")
        await box.publish(session, Moved(key="a", n=2), key="a")
    await relay.ship_once()
    async with AsyncSession(engine) as session, session.begin():
        await box.publish(session, Moved(key="a", n=3), key="a")
    # When cleanup runs before and after the retention
    assert (await relay.cleanup(now=time.time() + 30))[0] == 0
    assert (await relay.cleanup(now=time.time() + 120))[0] == 2
    # Then the pending event is still there, and depth reports it
    count, age = await relay.depth()
    assert count == 1 and age >= 0.0


async def test_a_commit_in_another_process_wakes_a_postgresql_relay_by_notify(postgres_url: str) -> None:
    # Given a relay that would poll only every 60 s, and a producer on a separate engine (no in-process wake-up)
    relay_engine, producer_engine = create_async_engine(postgres_url), create_async_engine(postgres_url)
    await install(relay_engine)
    app = App("orders", broker=MemoryBroker())
    relay = Relay(relay_engine, app, config=RelayConfig(poll_interval=60.0))
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        # (the round after LISTEN took effect has run: the relay now waits for a wake-up or its poll)
        await wait_until(lambda: relay.listening and relay.rounds >= 2, timeout=10, what="relay listening")
        # When the producer commits an event
        async with AsyncSession(producer_engine) as session, session.begin():
            staged = await Outbox(app).publish(session, Moved(key="a", n=1), key="a")
        # Then the relay ships it long before its next poll: the commit's NOTIFY woke it
        await wait_until(lambda: relay.shipped == 1, timeout=10, what="shipped after NOTIFY")
        assert [env.id for env in await read_log(app.broker, TOPIC)] == [staged.id]
    finally:
        stop.set()
        await running
        await app.close()
        await relay_engine.dispose()
        await producer_engine.dispose()
