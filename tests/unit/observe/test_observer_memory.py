"""The observer's memory is bounded: finished instances leave it, open ones past a cap wait in the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from choreograph import App, FakeClock
from choreograph.brokers.memory import MemoryBroker
from choreograph.core import codec
from choreograph.core.kv import MemoryKeyValue
from choreograph.observe.flows import FlowStore, FlowStuck, MemoryFlowStore, Observer, ObserverConfig, SqliteFlowStore
from choreograph.observe.flows.instance import COMPLETED
from choreograph.observe.flows.kv_store import KeyValueFlowStore
from tests.conftest import wait_until
from tests.unit.observe.conftest import FLOW, T0, Cancelled, Done, declined_path, envelope, happy_path

CAP = 10
SMALL = ObserverConfig(
    fetch_timeout=0.01, check_interval=0.01, dead_letter_interval=0.05, batch_size=16, max_open_instances=CAP
)
FINISHED, OPEN = 150, 40


@pytest.fixture(params=["memory", "sqlite", "kv"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> FlowStore:
    if request.param == "kv":
        return KeyValueFlowStore(MemoryKeyValue("flows"))
    return MemoryFlowStore() if request.param == "memory" else SqliteFlowStore(tmp_path / "flows.db")


async def test_memory_holds_at_most_the_cap_and_the_store_answers_for_the_rest(store: FlowStore) -> None:
    # Given 150 finished instances and 40 open ones (started and reserved, not due yet)
    app = App("bounded", broker=MemoryBroker(partitions=4))
    clock = FakeClock(start=T0 + 10)
    finished = [happy_path(f"f{n}") for n in range(FINISHED)]
    open_ = [happy_path(f"o{n}")[:2] for n in range(OPEN)]
    for env in [e for path in finished + open_ for e in path]:
        await app.publish_envelope(env.type, env)
    observer = Observer(app, [FLOW], store=store, clock=clock, config=SMALL)
    tracker_of = lambda: observer.trackers[FLOW.name]  # noqa: E731
    await observer.start()
    try:
        # When the observer has read everything
        await wait_until(lambda: observer.stats.events >= 4 * FINISHED + 2 * OPEN, 30, "every event read")
        await observer.check()
        tracker = tracker_of()
        # Then it holds no finished instance and at most CAP open ones, and still counts every completion
        assert len(tracker.instances) <= CAP
        assert all(i.final(FLOW) is None for i in tracker.instances.values())
        assert observer.figures()[FLOW.name].completed == FINISHED
        # And the store answers for every instance, finished or open (what `flows --state` reads)
        stored = await store.load(FLOW.name)
        assert len(stored) == FINISHED + OPEN
        assert sum(i.status(FLOW) == COMPLETED for i in stored) == FINISHED
        first = finished[0][0].id
        found = await observer.lookup(FLOW.name, first)
        assert found is not None and found.status(FLOW) == COMPLETED

        # When an open instance that left memory finishes
        evicted = next(path for path in open_ if path[0].id not in tracker.instances)
        done = envelope(Done(order_id="late"), 5, evicted[-1])
        await app.publish_envelope(done.type, done)
        await wait_until(lambda: observer.figures()[FLOW.name].completed == FINISHED + 1, 10, "it to complete")
        # Then it was loaded back with its earlier events, not started afresh
        reloaded = await observer.lookup(FLOW.name, evicted[0].id)
        assert reloaded is not None and len(reloaded.events) == 3

        # When the deadline of the others passes
        clock.advance(100)
        await wait_until(lambda: observer.stats.notices_published >= FINISHED + OPEN, 20, "the notices")
        await observer.check()
        # Then each open instance is reported stuck once, those in the store included, and memory stays bounded
        assert len(tracker.instances) <= CAP
    finally:
        await observer.stop()
    broker = app.broker
    assert isinstance(broker, MemoryBroker)
    stuck = [codec.decode(d.value).correlationid for d in await broker.read(FlowStuck.topic(), limit=10_000)]
    assert sorted(stuck) == sorted(path[0].id for path in open_ if path is not evicted)
    await store.close()


async def test_finished_instances_are_deleted_from_the_store_after_the_retention() -> None:
    # Given an observer with a one-hour retention that saw three instances finish
    app = App("retention", broker=MemoryBroker())
    store = MemoryFlowStore()
    clock = FakeClock(start=T0 + 10)
    config = ObserverConfig(fetch_timeout=0.01, check_interval=0.01, finished_retention=3600.0)
    for env in [e for n in range(3) for e in happy_path(f"r{n}")]:
        await app.publish_envelope(env.type, env)
    observer = Observer(app, [FLOW], store=store, clock=clock, config=config)
    await observer.start()
    try:
        await wait_until(lambda: observer.figures()[FLOW.name].completed == 3, 10, "three completions")
        await observer.stop()
        # When less, then more, than the retention has passed since they finished
        assert await observer.forget_finished() == 0
        clock.advance(3600)
        deleted = await observer.forget_finished()
        # Then they are deleted once, after it
        assert deleted == 3
        assert await store.load(FLOW.name) == []
    finally:
        await observer.close()


async def test_an_instance_with_a_missing_compensation_leaves_memory_once_reported_and_is_still_counted() -> None:
    # Given a declined order cancelled without releasing its reservation (the compensation never happens)
    app = App("compensation", broker=MemoryBroker())
    clock = FakeClock(start=T0 + 10)
    placed, reserved, declined = declined_path("c1", released=False)
    cancelled = envelope(Cancelled(order_id="c1"), 3, declined)
    for env in (placed, reserved, declined, cancelled):
        await app.publish_envelope(env.type, env)
    observer = Observer(app, [FLOW], store=MemoryFlowStore(), clock=clock, config=SMALL)
    await observer.start()
    try:
        await wait_until(lambda: observer.figures()[FLOW.name].failed == 1, 10, "the cancellation")
        # When its compensation timeout passes and the observer reports it
        clock.advance(30)
        await wait_until(lambda: observer.stats.notices_published >= 2, 10, "the notices")
        await observer.check()
        # Then the instance left memory, and the figures still count it failed with its compensation missing
        assert observer.instance(FLOW.name, placed.id) is None
        figures = observer.figures()[FLOW.name]
        assert (figures.failed, figures.compensation_missing) == (1, 1)
    finally:
        await observer.close()
