"""The memory broker's hooks for harnesses: ready_at says when a group next has work, wake returns waiting fetches."""

from __future__ import annotations

import asyncio

from choreograph import FakeClock, Record, Settlement
from choreograph.brokers.memory import MemoryBroker


async def test_ready_at_follows_a_group_from_unread_to_waiting_to_settled() -> None:
    # Given a group positioned before two records of one key
    clock = FakeClock()
    broker = MemoryBroker(partitions=1, clock=clock)
    sub = await broker.subscribe("t.idle", "g")
    assert broker.ready_at("t.idle", "g") is None
    await broker.publish("t.idle", [Record(b"first", "k"), Record(b"second", "k")])
    # Then unread records are work now
    assert broker.ready_at("t.idle", "g") == clock.now()
    # When the first is fetched alone, it is work in flight
    (first,) = await sub.fetch(1, 0)
    assert broker.ready_at("t.idle", "g") == clock.now()
    # When it is retried in 10 s, the group waits for it, the second record queued behind it
    await sub.settle(Settlement(retries=[(first, 10.0)]))
    assert broker.ready_at("t.idle", "g") == clock.now() + 10.0
    assert await sub.fetch(10, 0) == []  # reads the second into the group, blocked behind its key
    assert broker.ready_at("t.idle", "g") == clock.now() + 10.0
    # When time reaches the retry, it is work now
    clock.advance(10.0)
    assert broker.ready_at("t.idle", "g") == clock.now()
    again = await sub.fetch(10, 0)
    assert [d.value for d in again] == [b"first", b"second"]
    # and once both are settled, the group is idle
    await sub.settle(Settlement(acks=list(again)))
    assert broker.ready_at("t.idle", "g") is None
    assert broker.ready_at("t.idle", "unknown") is None


async def test_wake_returns_a_waiting_fetch_with_what_the_moved_clock_made_due() -> None:
    # Given a retry due in a minute of a fake clock, and a fetch waiting an hour
    clock = FakeClock()
    broker = MemoryBroker(partitions=1, clock=clock)
    sub = await broker.subscribe("t.wake", "g")
    await broker.publish("t.wake", [Record(b"x", "k")])
    (delivery,) = await sub.fetch(1, 0)
    await sub.settle(Settlement(retries=[(delivery, 60.0)]))
    waiting = asyncio.ensure_future(sub.fetch(10, 3600))
    await asyncio.sleep(0)  # let the fetch start waiting
    assert not waiting.done()
    # When the clock moves past the due time and the broker is woken
    clock.advance(60.0)
    broker.wake()
    # Then the fetch returns the retry at once
    (retried,) = await asyncio.wait_for(waiting, 2.0)
    assert retried.attempt == 2


async def test_wake_returns_a_waiting_fetch_empty_when_nothing_is_due() -> None:
    # Given a fetch waiting an hour on an empty topic
    broker = MemoryBroker()
    sub = await broker.subscribe("t.empty", "g")
    waiting = asyncio.ensure_future(sub.fetch(10, 3600))
    await asyncio.sleep(0)
    # When the broker is woken, then the fetch returns with nothing, without waiting out its timeout
    broker.wake()
    assert await asyncio.wait_for(waiting, 2.0) == []
