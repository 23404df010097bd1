"""Sequenced parking on the memory and SQLite backends (Redis and NATS: tests/brokers/*/test_*_parking.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from choreograph import App, Context, Event
from choreograph.brokers.memory import MemoryBroker
from choreograph.brokers.sqlite import SqliteBroker
from choreograph.core.errors import ConfigurationError
from choreograph.ops.cli import cli
from choreograph.runtime.audit import AuditLog
from choreograph.runtime.parking import Sequenced, SequencedParking
from choreograph.runtime.retry import RetryPolicy
from choreograph.testing.parking_scenarios import sequenced_parking
from tests.conftest import wait_until


async def test_on_memory() -> None:
    broker = MemoryBroker()
    try:
        await sequenced_parking(broker)
    finally:
        await broker.close()


async def test_on_sqlite(tmp_path: Path) -> None:
    broker = SqliteBroker(tmp_path / "p.db")
    try:
        await sequenced_parking(broker)
    finally:
        await broker.close()


class Note(Event, type="test.parking.note"):
    text: str


async def test_the_option_without_the_middleware_is_refused_and_a_broker_without_dead_letters_too() -> None:
    app = App("parking-refusal", broker="memory://")

    @app.service("notes").on(Note, options=[Sequenced()])
    async def take(event: Note, ctx: Context) -> None:
        return None

    with pytest.raises(ConfigurationError, match=r"SequencedParking\(app.broker\)"):
        await app.start()
    await app.close()
    with pytest.raises(ConfigurationError, match="cannot park"):
        SequencedParking(object())


def test_dlq_unblock_forgets_a_block_and_is_audited(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'u.db'}"
    app = App("parking-unblock", broker=url)
    app.use(SequencedParking(app.broker))

    @app.service("notes").on(Note, options=[Sequenced()], retry=RetryPolicy(immediate=0, delayed=0))
    async def take(event: Note, ctx: Context) -> None:
        raise RuntimeError("broken")

    parking = SequencedParking(app.broker)

    async def block() -> None:
        await app.start()
        await app.publish(Note(text="x"), key="k1")
        await wait_until(lambda: app.stats()["notes.take"].dead_letters == 1, 20, "one dead letter")
        assert await parking.blocker("notes.take", "k1") is not None
        await app.close()

    asyncio.run(block())
    result = CliRunner().invoke(cli, ["dlq", "unblock", "notes.take", "k1", "--actor", "ops", "--broker", url])
    assert result.exit_code == 0 and "unblocked" in result.output, result.output

    async def check() -> None:
        broker = SqliteBroker(tmp_path / "u.db")
        try:
            assert await SequencedParking(broker).blocker("notes.take", "k1") is None
            [record] = await AuditLog.of(broker).records(action="unblock")
            assert (record.actor, record.count) == ("ops", 1)
        finally:
            await broker.close()

    asyncio.run(check())
