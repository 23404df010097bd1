"""The handler pipeline on the in-memory broker: causality, dedupe, retries, dead letters, order."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable

import orjson
import pytest

from choreograph import (
    App,
    ConsumerConfig,
    Context,
    Event,
    FakeClock,
    Record,
    Reject,
    RetryPolicy,
    UnknownTopic,
    decode,
    encode,
)
from choreograph.brokers.memory import MemoryBroker
from choreograph.core.broker import DeadLetterStore, LogReader, Position, Settlement
from choreograph.core.envelope import Envelope
from choreograph.core.errors import BrokerError
from tests.conftest import wait_until


class Placed(Event, type="t.placed"):
    order_id: str


class Reserved(Event, type="t.reserved"):
    order_id: str


class Paid(Event, type="t.paid"):
    order_id: str


class Done(Event, type="t.done"):
    order_id: str


async def read_topic(broker: MemoryBroker, topic: str) -> list[Envelope]:
    try:
        records = await broker.read(topic, limit=100_000)
    except UnknownTopic:
        return []
    return [decode(d.value) for d in records]


def count(broker: MemoryBroker, topic: str, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len(await read_topic(broker, topic)) >= n

    return check


FAST = ConsumerConfig(fetch_timeout=0.02, batch_size=100)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(clock: FakeClock) -> MemoryBroker:
    return MemoryBroker(partitions=4, clock=clock)


async def test_three_hop_chain_inherits_correlation_and_sets_causation(broker: MemoryBroker) -> None:
    # Given a three-hop choreography
    app = App("shop", broker=broker, consumer=FAST)
    svc = app.service("flow")

    @svc.on(Placed)
    async def reserve(event: Placed, ctx: Context) -> Reserved:
        return Reserved(order_id=event.order_id)

    @svc.on(Reserved)
    async def pay(event: Reserved, ctx: Context) -> Paid:
        return Paid(order_id=event.order_id)

    @svc.on(Paid)
    async def finish(event: Paid, ctx: Context) -> Done:
        return Done(order_id=event.order_id)

    # When an order is placed
    await app.start()
    placed = await app.publish(Placed(order_id="o1"), key="o1")
    await wait_until(count(broker, "t.done", 1), what="Done published")
    await app.stop()

    # Then every hop continues the correlation and names its cause
    reserved = (await read_topic(broker, "t.reserved"))[0]
    paid = (await read_topic(broker, "t.paid"))[0]
    done = (await read_topic(broker, "t.done"))[0]
    assert placed.correlationid == placed.id
    assert [e.correlationid for e in (reserved, paid, done)] == [placed.id] * 3
    assert (reserved.causationid, paid.causationid, done.causationid) == (placed.id, reserved.id, paid.id)
    assert [e.partitionkey for e in (reserved, paid, done)] == ["o1"] * 3
    assert reserved.source == "flow"


async def test_handler_may_return_several_events_and_publish_explicitly(broker: MemoryBroker) -> None:
    app = App("shop", broker=broker, consumer=FAST)

    @app.service("fan").on(Placed)
    async def fan_out(event: Placed, ctx: Context) -> list[Event]:
        ctx.publish(Done(order_id=event.order_id), key="other")
        return [Reserved(order_id=event.order_id), Paid(order_id=event.order_id)]

    await app.start()
    placed = await app.publish(Placed(order_id="o1"), key="o1")
    await wait_until(count(broker, "t.paid", 1))
    await app.stop()
    outputs = [e for t in ("t.done", "t.reserved", "t.paid") for e in await read_topic(broker, t)]
    assert {e.causationid for e in outputs} == {placed.id}
    assert len({e.id for e in outputs}) == 3  # distinct positions -> distinct derived ids
    assert (await read_topic(broker, "t.done"))[0].partitionkey == "other"


async def test_duplicate_event_is_handled_once_even_in_one_batch(broker: MemoryBroker) -> None:
    # Given the same event (same source + id) published three times
    app = App("shop", broker=broker, consumer=FAST)
    calls: list[str] = []

    @app.service("inv").on(Placed)
    async def reserve(event: Placed, ctx: Context) -> None:
        calls.append(ctx.envelope.id)

    envelope = Envelope.for_event(Placed(order_id="o1"), source="shop", key="o1")
    raw = encode(envelope)
    await broker.publish("t.placed", [Record(raw, "o1"), Record(raw, "o1")])
    await app.start()
    await broker.publish("t.placed", [Record(raw, "o1")])
    await wait_until(
        lambda: sum(app.stats()["inv.reserve"].__getattribute__(n) for n in ("handled", "duplicates")) == 3
    )
    await app.stop()
    # Then the handler ran once and the other deliveries were acked as duplicates
    assert calls == [envelope.id]
    assert app.stats()["inv.reserve"].duplicates == 2


async def test_malformed_bytes_are_dead_lettered_and_the_consumer_keeps_going(broker: MemoryBroker) -> None:
    app = App("shop", broker=broker, consumer=FAST)
    handled: list[str] = []

    @app.service("inv").on(Placed)
    async def reserve(event: Placed, ctx: Context) -> None:
        handled.append(event.order_id)

    await app.start()
    await broker.publish("t.placed", [Record(b"\x00not json", "k")])
    await broker.publish("t.placed", [Record(b'{"specversion": "1.0"}', "k")])
    await app.publish(Placed(order_id="after"), key="k")
    await wait_until(lambda: handled == ["after"], what="the good event after the bad ones")
    await app.stop()
    dead = await broker.dead_letters()
    assert sorted(d.reason for d in dead) == ["decode", "decode"]
    assert {d.value for d in dead} == {b"\x00not json", b'{"specversion": "1.0"}'}
    assert all(d.error_type == "DecodeError" and d.group == "inv.reserve" for d in dead)


async def test_schema_mismatch_is_dead_lettered_without_retry(broker: MemoryBroker) -> None:
    app = App("shop", broker=broker, consumer=FAST)
    calls = 0

    @app.service("inv").on(Placed)
    async def reserve(event: Placed, ctx: Context) -> None:
        nonlocal calls
        calls += 1

    bad = Envelope(id="0190f6d8-0000-7000-8000-0000000000aa", source="x", type="t.placed", data={"order": 1})
    await broker.publish("t.placed", [Record(encode(bad), "k")])
    await app.start()
    await wait_until(lambda: app.stats()["inv.reserve"].dead_letters == 1)
    await app.stop()
    (dead,) = await broker.dead_letters()
    assert (dead.reason, dead.attempts, calls) == ("schema", 1, 0)
    assert "order_id" in dead.error_message


async def test_retry_tiers_follow_the_policy_then_dead_letter_with_every_field(
    broker: MemoryBroker, clock: FakeClock
) -> None:
    # Given a handler that always fails, 1 immediate retry and 2 delayed retries (10 s, 20 s)
    policy = RetryPolicy(immediate=1, delayed=2, base_delay=10.0, multiplier=2.0, jitter=0.0)
    app = App("shop", broker=broker, consumer=FAST, clock=clock)
    attempts: list[tuple[int, float]] = []

    @app.service("pay").on(Placed, retry=policy)
    async def capture(event: Placed, ctx: Context) -> None:
        attempts.append((ctx.attempt, clock.now()))
        raise ConnectionError(f"gateway down for {event.order_id}")

    start = clock.now()
    await app.start()
    sent = await app.publish(Placed(order_id="o1"), key="o1")
    # Attempts 1 and 2 happen at once (immediate tier); attempt 3 waits for the clock
    await wait_until(lambda: len(attempts) == 2)
    clock.advance(9.9)
    await asyncio.sleep(0.1)  # give a wrongly-early retry the chance to show up
    assert len(attempts) == 2
    clock.advance(0.1)
    await wait_until(lambda: len(attempts) == 3)
    clock.advance(19.9)
    await asyncio.sleep(0.1)
    assert len(attempts) == 3
    clock.advance(0.1)
    await wait_until(lambda: app.stats()["pay.capture"].dead_letters == 1)
    await app.stop()

    assert [a for a, _ in attempts] == [1, 2, 3, 4]
    assert [t - start for _, t in attempts] == [0.0, 0.0, 10.0, 30.0]
    (dead,) = await broker.dead_letters()
    assert dead.topic == "t.placed" and dead.group == "pay.capture" and dead.handler == "pay.capture"
    assert dead.event_id == sent.id and dead.event_type == "t.placed" and dead.key == "o1"
    assert dead.reason == "error" and dead.error_type == "ConnectionError"
    assert dead.error_message == "gateway down for o1" and "ConnectionError" in dead.stack
    assert dead.attempts == 4
    assert (dead.first_failure, dead.last_failure) == (start, start + 30.0)
    assert decode(dead.value) == sent


async def test_reject_skips_retries(broker: MemoryBroker) -> None:
    app = App("shop", broker=broker, consumer=FAST)

    @app.service("pay").on(Placed)
    async def capture(event: Placed, ctx: Context) -> None:
        raise Reject("card is on a blocklist")

    await app.start()
    await app.publish(Placed(order_id="o1"))
    await wait_until(lambda: app.stats()["pay.capture"].dead_letters == 1)
    await app.stop()
    (dead,) = await broker.dead_letters()
    assert (dead.reason, dead.attempts, dead.error_message) == ("reject", 1, "card is on a blocklist")


async def test_timeout_counts_as_a_failed_attempt(broker: MemoryBroker) -> None:
    app = App("shop", broker=broker, consumer=FAST)
    attempts: list[int] = []

    @app.service("pay").on(Placed, timeout=0.05, retry=RetryPolicy(immediate=1, delayed=0))
    async def capture(event: Placed, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        await asyncio.Event().wait()  # hangs until the timeout cancels it

    await app.start()
    await app.publish(Placed(order_id="o1"))
    await wait_until(lambda: app.stats()["pay.capture"].dead_letters == 1)
    await app.stop()
    assert attempts == [1, 2]
    assert (await broker.dead_letters())[0].error_type == "TimeoutError"


async def test_dead_letter_retry_reprocesses_once(broker: MemoryBroker) -> None:
    # Given an event dead-lettered by a handler that is fixed afterwards
    app = App("shop", broker=broker, consumer=FAST)
    broken = True
    handled: list[str] = []

    @app.service("pay").on(Placed, retry=RetryPolicy(immediate=0, delayed=0))
    async def capture(event: Placed, ctx: Context) -> Paid:
        if broken:
            raise RuntimeError("bug")
        handled.append(ctx.envelope.id)
        return Paid(order_id=event.order_id)

    await app.start()
    sent = await app.publish(Placed(order_id="o1"))
    await wait_until(lambda: app.stats()["pay.capture"].dead_letters == 1)
    broken = False
    (dead,) = await broker.dead_letters()
    # When it is resubmitted twice
    assert await broker.resubmit(dead.id) is True
    assert await broker.resubmit(dead.id) is False
    await wait_until(lambda: handled == [sent.id])
    await app.stop()
    # Then it was processed exactly once, with its original id, and the entry is resolved
    assert await broker.dead_letters() == []
    assert (await broker.dead_letter(dead.id)).status == "resubmitted"
    assert len(await read_topic(broker, "t.paid")) == 1


async def test_per_key_order_holds_with_concurrency(broker: MemoryBroker) -> None:
    app = App("shop", broker=broker, consumer=FAST)
    seen: dict[str, list[int]] = defaultdict(list)
    in_flight: set[str] = set()
    overlap = False

    class Step(Event, type="t.step"):
        key: str
        n: int

    @app.service("svc").on(Step, concurrency=8)
    async def handle(event: Step, ctx: Context) -> None:
        nonlocal overlap
        if event.key in in_flight:
            overlap = True
        in_flight.add(event.key)
        await asyncio.sleep(0)  # yield so other keys interleave
        seen[event.key].append(event.n)
        in_flight.discard(event.key)

    await app.publish_many((Step(key=f"k{i % 10}", n=i // 10), f"k{i % 10}") for i in range(1000))
    await app.start()
    await wait_until(lambda: sum(map(len, seen.values())) == 1000)
    await app.stop()
    assert not overlap
    assert all(ns == list(range(100)) for ns in seen.values())


async def test_two_groups_each_receive_everything(broker: MemoryBroker) -> None:
    app = App("shop", broker=broker, consumer=FAST)
    got: dict[str, list[str]] = defaultdict(list)

    @app.service("a").on(Placed)
    async def one(event: Placed, ctx: Context) -> None:
        got["a"].append(event.order_id)

    @app.service("b").on(Placed)
    async def two(event: Placed, ctx: Context) -> None:
        got["b"].append(event.order_id)

    await app.publish_many((Placed(order_id=str(i)), str(i)) for i in range(200))
    await app.start()
    await wait_until(lambda: len(got["a"]) == len(got["b"]) == 200)
    await app.stop()
    assert sorted(got["a"]) == sorted(got["b"]) == sorted(str(i) for i in range(200))


async def test_lag_equals_published_minus_committed(broker: MemoryBroker) -> None:
    app = App("shop", broker=broker, consumer=FAST)
    gate = asyncio.Event()
    entered: list[str] = []

    @app.service("a").on(Placed)
    async def slow(event: Placed, ctx: Context) -> None:
        entered.append(event.order_id)
        await gate.wait()

    await app.publish_many((Placed(order_id=str(i)), str(i)) for i in range(50))
    await app.start()
    await wait_until(lambda: bool(entered), what="the group to start handling")
    lag = await broker.lag("a.slow")
    assert sum(row.lag for row in lag) == 50
    gate.set()
    await wait_until(lambda: app.stats()["a.slow"].handled == 50)
    await app.stop()
    assert sum(row.lag for row in await broker.lag("a.slow")) == 0


def test_unknown_service_is_a_clear_error() -> None:
    app = App("shop", broker="memory://")
    app.service("a")
    with pytest.raises(ValueError, match="unknown service"):
        asyncio.run(app.start(["nope"]))


_ = (DeadLetterStore, LogReader, orjson)


EARLIEST = Position.earliest()


class FailingDeadLetterBroker(MemoryBroker):
    """A memory broker whose dead-letter writes fail while ``broken`` is set."""

    broken = True

    async def subscribe(self, topic, group, *, start=EARLIEST):  # type: ignore[no-untyped-def]
        subscription = await super().subscribe(topic, group, start=start)
        original = subscription.settle
        outer = self

        async def settle(settlement: Settlement) -> None:
            if outer.broken and settlement.dead_letters:
                raise BrokerError("dead-letter store is full")
            await original(settlement)

        subscription.settle = settle  # type: ignore[method-assign]
        return subscription


async def test_message_is_not_acked_when_its_dead_letter_cannot_be_written() -> None:
    # Given a handler that rejects everything and a dead-letter store that fails
    broker = FailingDeadLetterBroker(partitions=1)
    app = App("shop", broker=broker, consumer=ConsumerConfig(fetch_timeout=0.02, resubscribe_delay=0.01))
    attempts: list[int] = []

    @app.service("pay").on(Placed)
    async def capture(event: Placed, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        raise Reject("no")

    await app.start()
    await app.publish(Placed(order_id="o1"))
    # When settling fails, the event is delivered again rather than acked
    await wait_until(lambda: len(attempts) >= 3, what="redeliveries while the store is broken")
    assert await broker.dead_letters() == []
    assert sum(row.lag for row in await broker.lag("pay.capture")) == 1
    # Then once the store works, it lands there exactly once
    broker.broken = False
    await wait_until(lambda: app.stats()["pay.capture"].dead_letters >= 1)
    await app.stop()
    assert len(await broker.dead_letters()) == 1
    assert sum(row.lag for row in await broker.lag("pay.capture")) == 0
