"""Events leaving through the outbox are sealed as App.publish and the consumer seal them (signed here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from choreograph import App, ConfigurationError, Context
from choreograph.brokers.memory import MemoryBroker
from choreograph.outbox import Outbox, Relay, Transactional, TransactionalHandlers, db_session, install
from choreograph.security import KeyRing, Security, new_key
from choreograph.testing import TestApp
from tests.outbox.model import Charged, Moved, read_log


def keys() -> Security:
    return Security(keys=KeyRing([new_key("orders"), new_key("payments")]))


async def test_producer_events_and_handler_outputs_are_signed_and_open(tmp_path: Path) -> None:
    # Given signing apps: a producer staging through its outbox, and a transactional handler
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/service.db")
    await install(engine)
    security = keys()
    producer = App("orders", broker=MemoryBroker(), security=security)
    app = App("shop", security=security)
    app.use(TransactionalHandlers(Outbox(app)))

    @app.service("payments").on(Moved, options=[Transactional(engine)], concurrency=1)
    async def charge(event: Moved, ctx: Context) -> None:
        db_session(ctx)
        ctx.publish(Charged(key=event.key, n=event.n))

    try:
        async with AsyncSession(engine) as session, session.begin():
            staged = await Outbox(producer).publish(session, Moved(key="a", n=1), key="a")
        async with TestApp(app) as test:
            # When the relay ships the producer's event into the app, and then the handler's output
            relay = Relay(engine, test.broker)
            assert await relay.ship_once() == 1
            await test.drain()
            assert await relay.ship_once() == 1
            # Then both carry a signature that the shared key ring verifies
            [moved] = await read_log(test.broker, Moved.topic())
            [charged] = await read_log(test.broker, Charged.topic())
        assert moved.id == staged.id and staged.extensions  # the staged envelope is the sealed one
        for envelope in (moved, charged):
            assert await security.open(envelope) is not None
        assert charged.causationid == moved.id
        assert app.stats()["payments.charge"].handled == 1  # the consumer verified the shipped input
    finally:
        await producer.close()
        await engine.dispose()


def test_a_sync_session_refuses_to_stage_for_a_sealing_app(tmp_path: Path) -> None:
    sync_engine = create_engine(f"sqlite:///{tmp_path}/service.db")
    app = App("orders", broker=MemoryBroker(), security=keys())
    with Session(sync_engine) as session, pytest.raises(ConfigurationError, match="AsyncSession"):
        Outbox(app).publish_sync(session, Moved(key="a", n=1), key="a")
    sync_engine.dispose()
