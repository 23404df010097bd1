"""A relay declared on an App runs beside its consumers (what ``choreograph run`` does) and stops with them."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from choreograph import App
from choreograph.brokers.memory import MemoryBroker
from choreograph.outbox import Outbox, Relay, RelayConfig, install
from choreograph.outbox.companion import companions_of, companions_running
from tests.conftest import wait_until
from tests.outbox.model import Moved, read_log


async def test_a_declared_relay_ships_while_the_app_runs(tmp_path: Path) -> None:
    # Given an App with a relay declared on it, woken by its outbox's commits
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/service.db")
    await install(engine)
    app = App("orders", broker=MemoryBroker())
    relay = Relay(engine, app, config=RelayConfig(poll_interval=60.0))
    box = Outbox(app)
    box.on_commit(relay.wake)
    app.declare(relay)
    assert companions_of(app) == [relay]
    try:
        registry = CollectorRegistry()
        async with companions_running(app, registry=registry):
            await wait_until(lambda: relay.rounds >= 1, what="first round")
            # When a unit of work commits
            async with AsyncSession(engine) as session, session.begin():
                staged = await box.publish(session, Moved(key="a", n=1), key="a")
            # Then the relay, woken by the commit (its poll is a minute away), ships it
            await wait_until(lambda: relay.shipped == 1, timeout=10, what="shipped")
        assert [env.id for env in await read_log(app.broker, Moved.topic())] == [staged.id]
        assert registry.get_sample_value("choreograph_outbox_shipped_total") == 1  # in the App's registry
    finally:
        await app.close()
        await engine.dispose()
