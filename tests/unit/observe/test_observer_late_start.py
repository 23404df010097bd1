"""Deadlines are judged only against what the observer has read: a late start raises no false alarm."""

from __future__ import annotations

from pathlib import Path

from choreograph import App
from choreograph.brokers.memory import MemoryBroker
from choreograph.observe.flows import MemoryFlowStore, SqliteFlowStore
from tests.unit.observe.late_start import observer_started_after_traffic


async def test_an_observer_started_after_the_traffic_reports_only_the_stuck_instance_on_memory() -> None:
    app = App("late", broker=MemoryBroker(partitions=4))
    try:
        await observer_started_after_traffic(app, MemoryFlowStore())
    finally:
        await app.close()


async def test_an_observer_started_after_the_traffic_reports_only_the_stuck_instance_on_sqlite(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'late.db'}?partitions=4"
    app = App("late", broker=url)
    store = SqliteFlowStore.from_url(url)
    try:
        await observer_started_after_traffic(app, store)
    finally:
        await store.close()
        await app.close()
