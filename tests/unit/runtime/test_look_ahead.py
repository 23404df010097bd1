"""Reading the next batch while the last one settles (backends with ``fetch_while_settling``)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from collections.abc import Sequence

from choreograph import App, ConsumerConfig, Context, Event, Record, encode
from choreograph.brokers.memory import MemoryBroker, MemorySubscription
from choreograph.core.broker import Delivery, Position, Settlement
from choreograph.core.envelope import Envelope
from choreograph.core.errors import BrokerError, Retry
from tests.conftest import wait_until

EARLIEST = Position()


class Step(Event, type="t.step"):
    key: str
    n: int


class LookAheadBroker(MemoryBroker):
    """A memory broker whose settles wait, so the consumer's next read really overlaps them.

    The first settle waits until the next batch has been looked up in the inbox
    (or ``gate`` opens); ``failures`` settles raise BrokerError after waiting.
    """

    capabilities = dataclasses.replace(MemoryBroker.capabilities, fetch_while_settling=True)

    def __init__(self, *, failures: int = 0) -> None:
        super().__init__(partitions=2)
        self.failures = failures
        self.looked_up = asyncio.Event()
        self.overlaps = 0
        self.settling = 0
        self.retrying = 0
        self.retry_overlaps = 0

    async def subscribe(self, topic: str, group: str, *, start: Position = EARLIEST) -> MemorySubscription:
        sub = await super().subscribe(topic, group, start=start)
        fetch, settle, seen = sub.fetch, sub.settle, sub.seen
        outer = self

        async def fetching(max_records: int, timeout: float) -> list[Delivery]:
            if outer.settling:
                outer.overlaps += 1
            if outer.retrying:
                outer.retry_overlaps += 1
            return await fetch(max_records, timeout)

        async def looking_up(keys: Sequence[str]) -> set[str]:
            found = await seen(keys)
            if outer.settling:
                outer.looked_up.set()
            return found

        async def settling(settlement: Settlement) -> None:
            outer.settling += 1
            outer.retrying += bool(settlement.retries)
            try:
                await asyncio.wait_for(outer.looked_up.wait(), 0.2)  # the last batch has nothing after it
            except TimeoutError:
                pass
            finally:
                outer.settling -= 1
                outer.retrying -= bool(settlement.retries)
            outer.looked_up.clear()
            if outer.failures:
                outer.failures -= 1
                raise BrokerError("settle failed")
            await settle(settlement)

        sub.fetch, sub.settle, sub.seen = fetching, settling, looking_up  # type: ignore[method-assign]
        return sub


CONFIG = ConsumerConfig(fetch_timeout=0.02, batch_size=3, resubscribe_delay=0.01)


async def test_the_next_batch_is_read_while_the_last_settles_and_all_is_handled_in_key_order() -> None:
    broker = LookAheadBroker()
    app = App("shop", broker=broker, consumer=CONFIG)
    handled: dict[str, list[int]] = defaultdict(list)

    @app.service("svc").on(Step, concurrency=4)
    async def handle(event: Step, ctx: Context) -> None:
        handled[event.key].append(event.n)

    await app.publish_many((Step(key=f"k{i % 4}", n=i // 4), f"k{i % 4}") for i in range(40))
    await app.start()
    await wait_until(lambda: sum(map(len, handled.values())) == 40)
    await app.stop()
    assert broker.overlaps > 0, "no fetch ran while a settle was in flight"
    assert all(ns == list(range(10)) for ns in handled.values()), dict(handled)
    assert app.stats()["svc.handle"].handled == 40


async def test_a_duplicate_in_the_next_batch_is_caught_before_the_settle_stores_its_key() -> None:
    # Given the same event twice, one batch apart (batch size 1): the second copy is looked up in
    # the inbox while the settle that stores the first copy's key is still waiting
    broker = LookAheadBroker()
    app = App("shop", broker=broker, consumer=dataclasses.replace(CONFIG, batch_size=1))
    calls: list[str] = []

    @app.service("svc").on(Step)
    async def handle(event: Step, ctx: Context) -> None:
        calls.append(ctx.envelope.id)

    raw = encode(Envelope.for_event(Step(key="k", n=0), source="shop", key="k"))
    # (under two record keys: the memory broker holds back a key while an earlier record of it is out)
    await broker.publish(Step.topic(), [Record(raw, "a"), Record(raw, "b")])
    await app.start()
    stats = app.stats()["svc.handle"]
    await wait_until(lambda: stats.handled + stats.duplicates == 2)
    await app.stop()
    # Then the handler ran once
    assert broker.overlaps > 0
    assert len(calls) == 1
    assert stats.duplicates == 1


async def test_a_failed_settle_loses_nothing_and_keeps_key_order() -> None:
    # Given settles that fail twice while the next batch is already read (one event per batch, so
    # any event run before its predecessor's redo shows as a step back)
    broker = LookAheadBroker(failures=2)
    app = App("shop", broker=broker, consumer=dataclasses.replace(CONFIG, batch_size=1))
    handled: dict[str, list[int]] = defaultdict(list)

    @app.service("svc").on(Step)
    async def handle(event: Step, ctx: Context) -> None:
        handled[event.key].append(event.n)

    await app.publish_many((Step(key=f"k{i % 2}", n=i // 2), f"k{i % 2}") for i in range(12))
    await app.start()
    await wait_until(lambda: app.stats()["svc.handle"].handled == 12, what="every event settled once")
    await app.stop()
    # Then every event was handled, and a failed one ran again before anything after it of its key
    assert broker.overlaps > 0
    for ns in handled.values():
        assert sorted(set(ns)) == list(range(6))
        assert ns == sorted(ns), f"a later event ran before an earlier one was redone: {ns}"
    assert sum(len(ns) for ns in handled.values()) == 14, "two failed settles: two events ran twice"


async def test_nothing_is_read_ahead_past_a_settle_that_schedules_retries() -> None:
    # Given events that fail once each: their settles schedule retries
    broker = LookAheadBroker()
    app = App("shop", broker=broker, consumer=dataclasses.replace(CONFIG, batch_size=1))
    handled: dict[str, list[int]] = defaultdict(list)
    failed: set[int] = set()

    @app.service("svc").on(Step)
    async def handle(event: Step, ctx: Context) -> None:
        if event.n % 2 == 0 and event.n not in failed:
            failed.add(event.n)
            raise Retry(after=0.01)
        handled[event.key].append(event.n)

    await app.publish_many((Step(key="k", n=n), "k") for n in range(8))
    await app.start()
    await wait_until(lambda: len(handled["k"]) == 8, what="every event handled")
    await app.stop()
    # Then settles without retries were read past, those with retries were not, and key order held
    assert broker.overlaps > 0
    assert broker.retry_overlaps == 0, "a batch was read while a settle scheduling a retry was in flight"
    assert handled["k"] == list(range(8))
