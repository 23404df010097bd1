"""State stores: snapshots survive a reopen; a committed notice not yet published is published after a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from choreograph import App, ConfigurationError, FakeClock
from choreograph.brokers.memory import MemoryBroker
from choreograph.core import codec
from choreograph.observe.flows import FlowTracker, MemoryFlowStore, Observer, ObserverConfig, SqliteFlowStore
from tests.unit.observe.conftest import FLOW, T0, declined_path, happy_path


async def test_sqlite_store_round_trips_instances(tmp_path: Path) -> None:
    tracker = FlowTracker(FLOW)
    for env in happy_path() + declined_path(released=False):
        tracker.apply(env, now=T0 + 1)
    tracker.check(T0 + 100)
    store = SqliteFlowStore.from_url(f"sqlite:///{tmp_path}/log.db?partitions=4")
    await store.save(tracker.take_dirty())
    await store.close()
    await store.close()

    reopened = SqliteFlowStore(tmp_path / "log.db")
    loaded = {i.correlation_id: i for i in await reopened.load("order")}
    await reopened.close()

    assert loaded == tracker.instances
    assert await MemoryFlowStore().load("order") == []


def test_sqlite_store_needs_a_file_url() -> None:
    with pytest.raises(ConfigurationError):
        SqliteFlowStore.from_url("memory://")


async def test_notice_committed_but_not_published_is_published_after_restart(clock: FakeClock) -> None:
    # Given a stored instance that owes a completion notice (the previous observer died before publishing it)
    tracker = FlowTracker(FLOW)
    path = happy_path()
    for env in path:
        tracker.apply(env, now=T0 + 1)
    store = MemoryFlowStore()
    await store.save(tracker.take_dirty())
    app = App("t", broker=MemoryBroker())

    # When an observer starts on that state
    observer = Observer(app, [FLOW], store=store, clock=clock, config=ObserverConfig(check_interval=5))
    await observer.start()
    await observer.close()

    # Then it publishes the notice once, before reading anything
    broker = app.broker
    assert isinstance(broker, MemoryBroker)
    (completed,) = [codec.decode(d.value) for d in await broker.read("choreograph.flow.completed")]
    assert completed.correlationid == path[0].id
    (instance,) = await store.load("order")
    assert instance.notices == {"final": True}
