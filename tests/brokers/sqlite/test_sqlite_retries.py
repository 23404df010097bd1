"""Durable retries and the dead-letter store of the SQLite broker (fake clock)."""

from __future__ import annotations

import pytest

from choreograph.brokers.sqlite import SqliteBroker
from choreograph.core.broker import DeadLetter, Delivery, Record, Settlement
from choreograph.core.clock import FakeClock
from choreograph.core.errors import NotFound

from .conftest import OpenBroker


def dead_letter_for(delivery: Delivery, dead_letter_id: str = "dl-1") -> DeadLetter:
    return DeadLetter(
        id=dead_letter_id,
        topic=delivery.topic,
        group="g",
        handler="shop.ship",
        partition=delivery.partition,
        offset=delivery.offset,
        key=delivery.key,
        value=delivery.value,
        headers=dict(delivery.headers),
        event_id="0190-event",
        event_type="shop.order.placed",
        reason="error",
        error_type="ValueError",
        error_message="bad total ✗",
        stack="Traceback ...\n  line 1",
        attempts=3,
        first_failure=100.0,
        last_failure=200.0,
    )


async def test_retry_comes_back_after_its_delay_with_next_attempt(open_broker: OpenBroker) -> None:
    clock = FakeClock()
    broker = open_broker(clock=clock)
    await broker.publish("t", [Record(b"payload", key="k", headers={"h": "1"})])
    sub = await broker.subscribe("t", "g")
    (first,) = await sub.fetch(10, 1.0)
    # When it is nacked with a 30 s delay
    await sub.settle(Settlement(retries=[(first, 30.0)]))
    # Then it is not due before the delay passed
    assert await sub.fetch(10, 0.05) == []
    clock.advance(31)
    (again,) = await sub.fetch(10, 1.0)
    assert (again.offset, again.value, again.key, dict(again.headers)) == (first.offset, b"payload", "k", {"h": "1"})
    assert again.attempt == 2
    assert again.first_failure == clock.now() - 31
    # And a second failure keeps the first failure time and counts on
    await sub.settle(Settlement(retries=[(again, 0.0)]))
    (third,) = await sub.fetch(10, 1.0)
    assert (third.attempt, third.first_failure) == (3, again.first_failure)
    await sub.settle(Settlement(acks=[third]))
    assert await sub.fetch(10, 0.05) == []


async def test_retry_wakes_a_waiting_fetch_when_the_clock_moves(open_broker: OpenBroker) -> None:
    import asyncio

    clock = FakeClock()
    broker = open_broker(clock=clock)
    await broker.publish("t", [Record(b"x")])
    sub = await broker.subscribe("t", "g")
    (first,) = await sub.fetch(10, 1.0)
    await sub.settle(Settlement(retries=[(first, 5.0)]))
    waiting = asyncio.create_task(sub.fetch(10, 10.0))
    await asyncio.sleep(0.01)
    clock.advance(5)
    (again,) = await asyncio.wait_for(waiting, 2.0)
    assert again.attempt == 2


async def test_retries_survive_reopening_the_file(open_broker: OpenBroker) -> None:
    clock = FakeClock()
    broker = open_broker(clock=clock)
    await broker.publish("t", [Record(b"a", key="k"), Record(b"b", key="k")])
    sub = await broker.subscribe("t", "g")
    first, second = await sub.fetch(10, 1.0)
    await sub.settle(Settlement(acks=[second], retries=[(first, 10.0)]))
    await broker.close()
    # When the file is reopened and the delay passed
    clock.advance(11)
    reopened = open_broker(clock=clock)
    sub = await reopened.subscribe("t", "g")
    got = await sub.fetch(10, 1.0)
    # Then only the retried record comes back, as attempt 2
    assert [(d.value, d.attempt) for d in got] == [(b"a", 2)]
    assert sum(lag.lag for lag in await reopened.lag("g")) == 0


async def test_dead_letter_is_stored_with_every_field(broker: SqliteBroker) -> None:
    await broker.publish("t", [Record("données".encode(), key="k", headers={"ce_id": "1"})])
    sub = await broker.subscribe("t", "g")
    (delivery,) = await sub.fetch(10, 1.0)
    letter = dead_letter_for(delivery)
    # When the delivery is dead-lettered
    await sub.settle(Settlement(dead_letters=[(delivery, letter)]))
    # Then it is stored exactly, and the record is settled
    assert await broker.dead_letter("dl-1") == letter
    assert await broker.dead_letters(group="g") == [letter]
    assert await broker.dead_letters(group="other") == []
    assert sum(lag.lag for lag in await broker.lag("g")) == 0
    with pytest.raises(NotFound):
        await broker.dead_letter("missing")


async def test_resubmit_redelivers_once_as_attempt_one(broker: SqliteBroker) -> None:
    await broker.publish("t", [Record(b"original", key="k")])
    sub = await broker.subscribe("t", "g")
    (delivery,) = await sub.fetch(10, 1.0)
    await sub.settle(Settlement(dead_letters=[(delivery, dead_letter_for(delivery))]))
    # When resubmitted twice
    assert await broker.resubmit("dl-1") is True
    assert await broker.resubmit("dl-1") is False
    # Then the group gets it once, as a first attempt
    got = await sub.fetch(10, 1.0)
    assert [(d.value, d.attempt, d.offset, d.first_failure) for d in got] == [(b"original", 1, 0, None)]
    await sub.settle(Settlement(acks=list(got)))
    assert await sub.fetch(10, 0.05) == []
    assert (await broker.dead_letter("dl-1")).status == "resubmitted"
    assert await broker.dead_letters(status="open") == []
    with pytest.raises(NotFound):
        await broker.resubmit("missing")


async def test_resubmit_with_replacement_bytes(broker: SqliteBroker) -> None:
    await broker.publish("t", [Record(b"broken", key="k")])
    sub = await broker.subscribe("t", "g")
    (delivery,) = await sub.fetch(10, 1.0)
    await sub.settle(Settlement(dead_letters=[(delivery, dead_letter_for(delivery))]))
    assert await broker.resubmit("dl-1", value=b"fixed")
    (again,) = await sub.fetch(10, 1.0)
    assert again.value == b"fixed"
    # a retried resubmission dead-lettered again closes the loop
    await sub.settle(Settlement(dead_letters=[(again, dead_letter_for(again, "dl-2"))]))
    assert [d.id for d in await broker.dead_letters()] == ["dl-2"]
    assert await sub.fetch(10, 0.05) == []


async def test_purge_marks_entries(broker: SqliteBroker) -> None:
    await broker.publish("t", [Record(b"1", key="a"), Record(b"2", key="a"), Record(b"3", key="a")])
    sub = await broker.subscribe("t", "g")
    batch = await sub.fetch(10, 1.0)
    await sub.settle(Settlement(dead_letters=[(d, dead_letter_for(d, f"dl-{d.offset}")) for d in batch]))
    assert await broker.purge(["dl-0"]) == 1
    assert await broker.resubmit("dl-0") is False
    assert await broker.purge() == 2
    assert await broker.dead_letters() == []
    assert len(await broker.dead_letters(status=None)) == 3
