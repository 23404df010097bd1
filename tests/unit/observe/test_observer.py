"""The live observer on the in-memory broker, under a fake clock."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from choreograph import App, Envelope, FakeClock
from choreograph.brokers.memory import MemoryBroker
from choreograph.core import codec
from choreograph.observe.flows import FlowStuck, Instance, MemoryFlowStore, Observer, ObserverConfig
from tests.conftest import wait_until
from tests.unit.observe.conftest import FLOW, T0, declined_path, happy_path

FAST = ObserverConfig(fetch_timeout=0.01, check_interval=0.01, dead_letter_interval=0.01, batch_size=3)


async def publish(app: App, envelopes: Sequence[Envelope]) -> None:
    for env in envelopes:
        await app.publish_envelope(codec.decode(codec.encode(env)).type, env)


async def stuck_events(broker: MemoryBroker) -> list[Envelope]:
    return [codec.decode(d.value) for d in await broker.read(FlowStuck.topic())]


@pytest.fixture
def app() -> App:
    return App("test", broker=MemoryBroker())


async def test_instance_past_deadline_is_reported_stuck_exactly_once_across_restarts(
    app: App, clock: FakeClock
) -> None:
    # Given an instance that started at T0 and got no further than its first step
    store = MemoryFlowStore()
    await publish(app, happy_path()[:2])
    observer = Observer(app, [FLOW], store=store, clock=clock, config=FAST)
    await observer.start()
    await wait_until(lambda: observer.figures()["order"].in_flight == 1, 5, "the instance to be seen")

    # When the clock passes its 30 s deadline and checks run repeatedly
    clock.advance(21)
    await observer.check()
    await observer.check()
    await wait_until(lambda: observer.stats.notices_published == 1, 5, "the stuck notice")
    await observer.stop()
    restarted = Observer(app, [FLOW], store=store, clock=clock, config=FAST)
    await restarted.start()
    clock.advance(100)
    await restarted.check()
    await restarted.stop()

    # Then exactly one FlowStuck was published, naming what the instance waits for
    broker = app.broker
    assert isinstance(broker, MemoryBroker)
    (stuck,) = await stuck_events(broker)
    assert stuck.data["waiting_for"] == ["test.flow.charged"]
    assert stuck.correlationid == happy_path_ids_correlation(stuck)
    assert restarted.figures()["order"].stuck == 1
    assert restarted.stats.notices_published == 0


def happy_path_ids_correlation(env: Envelope) -> str:
    return env.data["correlation_id"]  # type: ignore[no-any-return]


async def test_not_stuck_before_the_deadline(app: App, clock: FakeClock) -> None:
    await publish(app, happy_path()[:1])
    async with Observer(app, [FLOW], store=MemoryFlowStore(), clock=clock, config=FAST) as observer:
        await wait_until(lambda: observer.figures()["order"].in_flight == 1, 5, "the instance")
        clock.advance(19)  # T0 + 29 < T0 + 30
        await observer.check()
        assert observer.figures()["order"].stuck == 0


async def test_reordered_and_duplicated_deliveries_give_the_right_state(app: App, clock: FakeClock) -> None:
    # Given the events of two instances published newest first, and each twice
    events = happy_path("a") + declined_path("b")
    await publish(app, list(reversed(events)) + events)

    # When the observer reads them
    async with Observer(app, [FLOW], store=MemoryFlowStore(), clock=clock, config=FAST) as observer:
        await wait_until(lambda: observer.stats.events == 2 * len(events), 5, "every delivery")
        figures = observer.figures()["order"]

    # Then each instance is final once, and the saga's compensation is seen
    assert (figures.started, figures.completed, figures.failed, figures.compensated) == (2, 1, 1, 1)
    assert observer.stats.applied == len(events)
    assert observer.stats.duplicates == len(events)


class CrashAfterSave(MemoryFlowStore):
    """Commits the state, then dies before the observer can settle (as a kill -9 would)."""

    def __init__(self, inner: MemoryFlowStore, crash_on: int) -> None:
        super().__init__()
        self.inner = inner
        self.crash_on = crash_on
        self.saves = 0

    async def load(self, flow: str, *, after: str = "", limit: int | None = None) -> list[Instance]:
        return await self.inner.load(flow, after=after, limit=limit)

    async def fetch(self, flow: str, correlation_ids: Sequence[str]) -> list[Instance]:
        return await self.inner.fetch(flow, correlation_ids)

    async def save(self, instances: Sequence[Instance]) -> None:
        if self.saves >= self.crash_on:
            raise RuntimeError("observer process died")
        await self.inner.save(instances)
        self.saves += 1
        if self.saves == self.crash_on:
            raise RuntimeError("observer process died after committing")


async def test_restart_after_commit_before_settle_neither_loses_nor_double_counts(app: App, clock: FakeClock) -> None:
    # Given ten instances, each with its first two events published
    paths = [happy_path(f"o{i}") for i in range(10)]
    await publish(app, [env for path in paths for env in path[:2]])
    durable = MemoryFlowStore()
    crashing = Observer(app, [FLOW], store=CrashAfterSave(durable, crash_on=3), clock=clock, config=FAST)

    # When the observer dies right after committing its third batch (not settled)
    await crashing.start()
    await wait_until(lambda: crashing.failure is not None, 5, "the crash")
    await crashing.stop()
    assert "died after committing" in str(crashing.failure)
    # ... the rest of every instance is published, and a new observer resumes from the store
    await publish(app, [env for path in paths for env in path[2:]])
    async with Observer(app, [FLOW], store=durable, clock=clock, config=FAST) as resumed:
        await wait_until(lambda: resumed.figures()["order"].completed == 10, 5, "every completion")
        figures = resumed.figures()["order"]

    # Then every instance counts once, none lost
    assert (figures.started, figures.completed, figures.in_flight) == (10, 10, 0)
    assert figures.time_to_finality.count == 10
    assert all(len(i.events) == 4 for i in await durable.load("order"))


async def test_completion_is_published_once_with_the_instance_correlation(app: App, clock: FakeClock) -> None:
    path = happy_path()
    await publish(app, path + path[-1:])
    slow_checks = ObserverConfig(fetch_timeout=0.01, check_interval=0.2)
    async with Observer(app, [FLOW], store=MemoryFlowStore(), clock=clock, config=slow_checks) as observer:
        await wait_until(lambda: observer.stats.notices_published == 1, 5, "the completion notice")
    broker = app.broker
    assert isinstance(broker, MemoryBroker)
    (completed,) = [codec.decode(d.value) for d in await broker.read("choreograph.flow.completed")]
    assert completed.correlationid == path[0].id
    assert completed.data["outcome"] == "completed"
    assert completed.data["duration"] == 3.0


async def test_state_is_committed_before_deliveries_are_settled(app: App, clock: FakeClock) -> None:
    store = MemoryFlowStore()
    await publish(app, happy_path())
    async with Observer(app, [FLOW], store=store, clock=clock, config=FAST) as observer:
        await wait_until(lambda: observer.figures()["order"].completed == 1, 5, "the completion")
    (instance,) = await store.load("order")
    assert len(instance.events) == 4
    assert min(s.time for s in instance.events.values()) >= T0
