"""Kill -9 at the dual write's weak points: between commit and publish, between publish and mark, inside a handler."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from choreograph import App, Context
from choreograph.brokers import open_broker
from choreograph.outbox import Relay
from tests.conftest import wait_until

from .model import Charged, Moved, ledger, read_log

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("CHOREOGRAPH_OUTBOX_KILLS", "3"))
"""Killed runs of the handler per database (bounded here; raise it for a longer run)."""


@pytest.fixture
def broker_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/log.db?lease_timeout=0.5&partitions=2"


async def child(spec: dict[str, Any], timeout: float = 60.0) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.outbox.child", json.dumps(spec), cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def staged_id(out: str) -> str:
    return str(json.loads(out.splitlines()[0])["staged"])


async def test_killed_between_commit_and_publish_the_event_is_published_once_after_restart(
    engine: AsyncEngine, db_url: str, broker_url: str
) -> None:
    # Given a producer killed -9 right after its commit, before anything was published
    rc, out = await child({"mode": "stage", "db": db_url, "broker": broker_url})
    assert rc == -signal.SIGKILL
    broker = open_broker(broker_url)
    try:
        assert await read_log(broker, Moved.topic()) == []
        # When a relay starts afterwards
        assert await Relay(engine, broker).ship_once() == 1
        assert await Relay(engine, broker).ship_once() == 0
        # Then the committed event is in the log exactly once
        assert [env.id for env in await read_log(broker, Moved.topic())] == [staged_id(out)]
    finally:
        await broker.close()


async def test_killed_between_publish_and_mark_the_repeat_has_the_same_id_and_downstream_sees_one(
    engine: AsyncEngine, db_url: str, broker_url: str
) -> None:
    # Given a relay killed -9 after its publish returned, before it marked the row shipped
    rc, out = await child({"mode": "ship", "db": db_url, "broker": broker_url})
    assert rc == -signal.SIGKILL
    app = App("downstream", broker=broker_url)
    handled: list[str] = []

    @app.service("audit").on(Moved)
    async def note(event: Moved, ctx: Context) -> None:
        handled.append(ctx.envelope.id)

    try:
        # When a relay ships again after the restart (on SQLite, once the dead relay's lease expired)
        relay = Relay(engine, app.broker)

        async def shipped() -> bool:
            return await relay.ship_once() == 1

        await wait_until(shipped, timeout=10, what="the unmarked row shipped again")
        # Then the log holds two copies of one id (at least once) and a downstream handler runs once
        log = await read_log(app.broker, Moved.topic())
        assert [env.id for env in log] == [staged_id(out)] * 2
        await app.start()
        await wait_until(lambda: sum(s.handled + s.duplicates for s in app.stats().values()) == 2, timeout=20)
        assert handled == [staged_id(out)]
        assert app.stats()["audit.note"].duplicates == 1
    finally:
        await app.close()


async def test_a_handler_killed_at_random_points_has_one_effect_and_one_output_per_event(
    engine: AsyncEngine, db_url: str, broker_url: str
) -> None:
    # Given input events in the log
    total = 12
    app = App("orders", broker=broker_url)
    try:
        sent = await app.publish_many((Moved(key=f"k{n % 3}", n=n), f"k{n % 3}") for n in range(total))
    finally:
        await app.close()
    # (the broker's own inbox is off: the database's inbox alone must make the effects happen once)
    spec = {"mode": "handle", "db": db_url, "broker": broker_url, "total": total, "dedupe": False}
    # When the transactional handler is killed -9 at a random point, again and again, then runs to the end
    kills = 0
    for seed in range(KILLS):
        rc, _ = await child({**spec, "seed": seed})
        assert rc in (0, -signal.SIGKILL), rc
        kills += rc == -signal.SIGKILL
    rc, _ = await child(spec)
    assert rc == 0
    assert kills >= 1
    # Then the ledger holds exactly one effect per event
    async with engine.connect() as conn:
        booked = Counter((await conn.execute(select(ledger.c.event_id))).scalars())
    assert booked == Counter(env.id for env in sent)
    # And, shipped by a relay, each input has exactly one output in the log, with one id
    broker = open_broker(broker_url)
    try:
        while await Relay(engine, broker).ship_once():
            pass
        charged = await read_log(broker, Charged.topic())
        assert Counter(env.causationid for env in charged) == Counter(env.id for env in sent)
        assert len({env.id for env in charged}) == total
    finally:
        await broker.close()
