"""Lease fencing on Redis, on a real redis-server: a member that lost a partition cannot settle it.

A member's leases are renewed by a thread, so a handler that blocks the event
loop keeps them; a member whose lease lapsed anyway (a frozen process, Redis
out of reach) and was taken over has nothing of its settle applied.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest

from choreograph.brokers.redis import RedisBroker, RedisSubscription
from choreograph.core.broker import Record, Settlement
from choreograph.core.errors import LeaseLost
from choreograph.testing.recovery_scenarios import dead_letter_for
from tests.brokers.fetching import fetch_exactly

from .server import RedisServer


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    """One partition per topic, so two members of a group contend for the same lease."""
    return f"{redis_server.url}?prefix=f{uuid.uuid4().hex[:8]}&partitions=1&poll_interval=0.05"


async def _lapse(broker: RedisBroker, topic: str, group: str) -> None:
    """Make every member and lease of ``group`` look expired, as when they stopped renewing for lease_timeout."""
    keys = broker.keys.group(topic, group)
    past = int(time.time() * 1000) - 1
    for member in await broker.client.zrange(keys.members, 0, -1):
        await broker.client.zadd(keys.members, {member: past})
    for partition, value in (await broker.client.hgetall(keys.leases)).items():
        member, _, token = value.decode().split("|")
        await broker.client.hset(keys.leases, partition, f"{member}|{past}|{token}")


@pytest.fixture
async def brokers(url: str) -> AsyncIterator[tuple[RedisBroker, RedisBroker]]:
    """Two brokers (as two processes would have) on the same prefix; renewals every 10 s, leases 30 s."""
    first = RedisBroker.from_url(f"{url}&lease_timeout=30&heartbeat_interval=10")
    second = RedisBroker.from_url(f"{url}&lease_timeout=30&heartbeat_interval=10")
    yield first, second
    await first.close()
    await second.close()


async def test_a_settle_of_a_partition_taken_over_is_refused_whole(brokers: tuple[RedisBroker, RedisBroker]) -> None:
    # Given member A holding three records, whose lease lapsed and was taken by member B
    first, second = brokers
    await first.publish("t", [Record(f"v{i}".encode(), f"k{i}") for i in range(3)])
    stale: RedisSubscription = await first.subscribe("t", "g")
    held = await fetch_exactly(stale, 3, 0.1)
    await _lapse(first, "t", "g")
    taker: RedisSubscription = await second.subscribe("t", "g")
    assert taker._owned.keys() == {0}

    # When A settles everything a settle can carry: an ack, an output, a retry, a dead letter, an inbox key
    settlement = Settlement(
        acks=[held[0]],
        retries=[(held[1], 5.0)],
        dead_letters=[(held[2], dead_letter_for(held[2], "g"))],
        outputs=[("out", Record(b"output", "k0"))],
        inbox=["dedupe-key"],
    )
    with pytest.raises(LeaseLost, match="no longer holds partition 0"):
        await stale.settle(settlement)

    # Then none of it was applied: no output, nothing acked, no retry, no dead letter, no inbox key
    client, g = first.client, first.keys.group("t", "g")
    assert await client.exists(first.keys.stream("out", 0)) == 0
    assert (await client.xpending(first.keys.stream("t", 0), "g"))["pending"] == 3
    assert await client.zcard(g.retries(0)) == 0
    assert await client.zcard(first.keys.dead_letter_index) == 0
    assert await taker.seen(["dedupe-key"]) == set()
    # and A is done: it neither fetches nor settles again, and leaves without touching B's lease
    with pytest.raises(LeaseLost):
        await stale.fetch(10, 0.1)
    await stale.close()
    assert (await client.hget(g.leases, "0")).decode().startswith(taker.member + "|")
    # and B redelivers all three and settles them
    again = await fetch_exactly(taker, 3, 0.1)
    assert sorted(d.offset for d in again) == [d.offset for d in held]
    await taker.settle(Settlement(acks=again, outputs=[("out", Record(b"output", "k0"))]))
    assert await client.xlen(first.keys.stream("out", 0)) == 1


async def test_a_lapsed_lease_taken_back_by_its_member_does_not_admit_the_old_settle(
    brokers: tuple[RedisBroker, RedisBroker],
) -> None:
    # Given member A whose lease lapsed, was taken by B, and came back to A after B left
    first, second = brokers
    await first.publish("t", [Record(b"v", "k")])
    stale: RedisSubscription = await first.subscribe("t", "g")
    held = await fetch_exactly(stale, 1, 0.1)
    await _lapse(first, "t", "g")
    taker = await second.subscribe("t", "g")
    await taker.close()
    lease = stale._lease
    lease.begin_change()
    try:
        answer = await first.heartbeat_script(keys=lease.keys, args=lease.arguments(rebalance=True))
    finally:
        lease.end_change()
    assert [int(answer[1])] == [0], "A holds partition 0 again, under a new token"

    # When A settles what it fetched under the old token
    # Then the settle is refused: B may have handled (and output) the same record meanwhile
    with pytest.raises(LeaseLost):
        await stale.settle(Settlement(acks=held, outputs=[("out", Record(b"output", "k"))]))
    assert await first.client.exists(first.keys.stream("out", 0)) == 0
    await stale.close()


async def test_a_blocked_event_loop_keeps_its_leases(url: str) -> None:
    # Given member A with a one-second lease holding a record
    first = RedisBroker.from_url(f"{url}&lease_timeout=1")
    second = RedisBroker.from_url(f"{url}&lease_timeout=1")
    try:
        await first.publish("t", [Record(b"v", "k")])
        holder: RedisSubscription = await first.subscribe("t", "g")
        held = await fetch_exactly(holder, 1, 0.1)

        # When a handler blocks the event loop for two and a half leases
        time.sleep(2.5)  # blocking the loop is the fault under test

        # Then A still holds its partition (renewed off the loop): a new member gets nothing,
        # and A's settle goes through
        newcomer: RedisSubscription = await second.subscribe("t", "g")
        assert newcomer._owned.keys() == set()
        assert await newcomer.fetch(10, 0.2) == []
        await holder.settle(Settlement(acks=held, outputs=[("out", Record(b"output", "k"))]))
        assert await first.client.xlen(first.keys.stream("out", 0)) == 1
    finally:
        await first.close()
        await second.close()


async def test_a_member_whose_renewals_stopped_refuses_to_settle_locally(url: str) -> None:
    # Given member A holding a record whose renewals stopped (its keepalive no longer renews it)
    broker = RedisBroker.from_url(f"{url}&lease_timeout=0.5")
    try:
        await broker.publish("t", [Record(b"v", "k")])
        holder: RedisSubscription = await broker.subscribe("t", "g")
        held = await fetch_exactly(holder, 1, 0.1)
        broker.keepalive.discard(holder._lease)

        # When its lease time has run out locally
        time.sleep(0.6)  # the lease runs out: the fault under test

        # Then it refuses to settle or fetch before asking Redis, saying why
        with pytest.raises(LeaseLost, match="not renewed within lease_timeout"):
            await holder.settle(Settlement(acks=held))
        with pytest.raises(LeaseLost):
            await holder.fetch(1, 0.1)
        assert (await broker.client.xpending(broker.keys.stream("t", 0), "g"))["pending"] == 1
        await holder.close()
    finally:
        await broker.close()
