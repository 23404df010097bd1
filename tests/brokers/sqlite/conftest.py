"""Fixtures for the SQLite broker tests: real files in tmp_path, closed at the end (stress runs only with -m stress)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from choreograph.brokers.sqlite import SqliteBroker, SqliteConfig
from choreograph.core.clock import Clock, FakeClock
from choreograph.testing.pytest_plugin import pytest_collection_modifyitems

__all__ = ["pytest_collection_modifyitems"]

OpenBroker = Callable[..., SqliteBroker]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "broker.db"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def open_broker(db_path: Path) -> AsyncIterator[OpenBroker]:
    """Open brokers on the test's file (several may share it, like processes would)."""
    opened: list[SqliteBroker] = []

    def make(
        config: SqliteConfig | None = None, *, clock: Clock | None = None, path: Path | None = None
    ) -> SqliteBroker:
        broker = SqliteBroker(path or db_path, config or SqliteConfig(partitions=4), clock=clock)
        opened.append(broker)
        return broker

    yield make
    for broker in opened:
        await broker.close()


@pytest.fixture
async def broker(open_broker: OpenBroker) -> SqliteBroker:
    return open_broker()
