"""Sequenced parking on the memory and SQLite backends (Redis and NATS: tests/brokers/*/test_*_parking.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from choreograph import App, Context, Event
from choreograph.brokers.memory import MemoryBroker
from choreograph.brokers.sqlite import SqliteBroker
from choreograph.core.errors import ConfigurationError
from choreograph.runtime.parking import Sequenced, SequencedParking
from choreograph.testing.parking_scenarios import sequenced_parking


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
