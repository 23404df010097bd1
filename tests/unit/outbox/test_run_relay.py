"""``choreograph run`` runs the relays an App declares beside its consumers, and stops them on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from choreograph import App
from choreograph.brokers import open_broker
from choreograph.outbox import Outbox, install
from tests.conftest import wait_until
from tests.outbox.model import Moved, read_log

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]


async def test_choreograph_run_ships_the_outbox_of_a_declared_relay(tmp_path: Path) -> None:
    # Given a committed event in a service database, and an App declaring a relay on it
    db, log = f"sqlite+aiosqlite:///{tmp_path}/service.db", f"sqlite:///{tmp_path}/log.db"
    engine = create_async_engine(db)
    await install(engine)
    producer = App("orders", broker=log)
    async with AsyncSession(engine) as session, session.begin():
        staged = await Outbox(producer).publish(session, Moved(key="a", n=1), key="a")
    await producer.close()
    await engine.dispose()
    # When `choreograph run` runs the App
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "choreograph", "run", "tests.unit.outbox.relay_app:app", "--broker", log),
        cwd=ROOT,
        env={**os.environ, "CHOREOGRAPH_TEST_OUTBOX_DB": db},
        stdout=asyncio.subprocess.PIPE,
    )
    broker = open_broker(log)
    try:
        # Then its relay ships the event, and the worker stops cleanly on SIGTERM
        async def shipped() -> bool:
            return [env.id for env in await read_log(broker, Moved.topic())] == [staged.id]

        await wait_until(shipped, timeout=30, what="shipped by the relay inside choreograph run")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await broker.close()
