"""Consumer groups on SQLite: partition leases, fair shares, takeover, settle under a lost lease."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from choreograph.brokers.sqlite import SqliteBroker, SqliteConfig, SqliteSubscription
from choreograph.core.broker import Delivery, Record, Settlement
from choreograph.core.errors import BrokerClosed, BrokerError
from tests.conftest import wait_until

from .conftest import OpenBroker

FAST = SqliteConfig(partitions=4, lease_timeout=1.0, heartbeat_interval=0.2, rebalance_check_interval=0.02)


async def consume_shared(members: list[SqliteSubscription], expected: int, timeout: float = 10.0) -> list[Delivery]:
    """Fetch and ack round-robin across members until ``expected`` deliveries arrived."""
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(got) < expected:
        assert time.monotonic() < deadline, f"only {len(got)} of {expected} delivered"
        for member in members:
            batch = await member.fetch(100, 0.02)
            if batch:
                got.extend(batch)
                await member.settle(Settlement(acks=list(batch)))
    return got


async def test_members_of_one_group_split_partitions(broker: SqliteBroker) -> None:
    # Given two members of one group
    first = await broker.subscribe("t", "g")
    second = await broker.subscribe("t", "g")
    await wait_until(lambda: len(first.held()) == 2 and len(second.held()) == 2, what="an even split")
    assert first.held().isdisjoint(second.held())
    # When 200 keyed records are published
    await broker.publish("t", [Record(f"{i}".encode(), key=f"k{i}") for i in range(200)])
    got = await consume_shared([first, second], 200)
    # Then each record went to exactly one member, from its own partitions
    assert sorted(int(d.value) for d in got) == list(range(200))
    assert {d.partition for d in got} == first.held() | second.held()


async def test_joining_member_takes_over_some_partitions(open_broker: OpenBroker) -> None:
    broker = open_broker(FAST)
    first = await broker.subscribe("t", "g")
    assert first.held() == {0, 1, 2, 3}
    # When another process joins the group (a second broker on the file)
    other = open_broker(FAST)
    second = await other.subscribe("t", "g")
    # Then the first gives up its surplus and the second takes it
    await wait_until(lambda: len(second.held()) == 2 and len(first.held()) == 2, what="rebalance on join")
    assert first.held().isdisjoint(second.held())


async def test_busy_partitions_drain_before_moving(open_broker: OpenBroker) -> None:
    broker = open_broker(FAST)
    await broker.publish("t", [Record(b"v", key=f"k{i}") for i in range(40)])
    first = await broker.subscribe("t", "g")
    in_flight = await first.fetch(1000, 1.0)
    assert {d.partition for d in in_flight} == {0, 1, 2, 3}
    second = await open_broker(FAST).subscribe("t", "g")
    # While every partition has unsettled deliveries, none moves
    await wait_until(lambda: first._generation >= 2, what="the first member to notice the join")
    assert second.held() == set()
    # Once settled, the surplus moves
    await first.settle(Settlement(acks=list(in_flight)))
    await wait_until(lambda: len(second.held()) == 2, what="drained partitions to move")
    assert len(first.held()) == 2


async def test_closing_member_hands_partitions_over(open_broker: OpenBroker) -> None:
    broker = open_broker(FAST)
    first = await broker.subscribe("t", "g")
    second = await open_broker(FAST).subscribe("t", "g")
    await wait_until(lambda: len(second.held()) == 2, what="the split")
    await broker.publish("t", [Record(f"{i}".encode(), key=f"k{i}") for i in range(50)])
    # When the first member fetches, then closes without settling
    unsettled = await first.fetch(1000, 1.0)
    assert unsettled
    await first.close()
    # Then the second member gets all partitions at once and everything is delivered
    await wait_until(lambda: len(second.held()) == 4, timeout=2.0, what="handover on close")
    got = await consume_shared([second], 50)
    assert sorted(int(d.value) for d in got) == list(range(50))


async def test_settle_after_losing_the_lease_raises_and_new_owner_redelivers(
    open_broker: OpenBroker, db_path: object
) -> None:
    broker = open_broker(FAST)
    await broker.publish("t", [Record(b"v", key="k")])
    first = await broker.subscribe("t", "g")
    batch = await first.fetch(10, 1.0)
    # Given another member took the partition (as after an expired lease)
    conn = sqlite3.connect(str(db_path))
    with conn:
        conn.execute("UPDATE leases SET member = 'someone-else' WHERE grp = 'g'")
    conn.close()
    # Then the settle fails rather than committing someone else's partition
    with pytest.raises(BrokerError, match="no longer leases"):
        await first.settle(Settlement(acks=list(batch), inbox=["dedupe-key"]))
    assert sum(lag.committed for lag in await broker.lag("g")) == 0
    assert await first.seen(["dedupe-key"]) == set()


async def test_closed_subscription_refuses_calls(broker: SqliteBroker) -> None:
    sub = await broker.subscribe("t", "g")
    await sub.close()
    await sub.close()  # idempotent
    with pytest.raises(BrokerClosed):
        await sub.fetch(1, 0.01)


async def test_broker_close_is_idempotent_and_rejects_publish(open_broker: OpenBroker) -> None:
    broker = open_broker()
    pending = [asyncio.create_task(broker.publish("t", [Record(b"v")])) for _ in range(20)]
    await asyncio.sleep(0)
    await broker.close()
    await broker.close()
    await asyncio.gather(*pending)
    with pytest.raises(BrokerClosed):
        await broker.publish("t", [Record(b"v")])
    reopened = open_broker()
    assert len(await reopened.read("t")) == 20


async def test_ping_reports_a_missing_file(open_broker: OpenBroker, tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "gone.db"
    broker = open_broker(path=path)
    await broker.ping()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    from choreograph.core.errors import BrokerUnavailable

    with pytest.raises(BrokerUnavailable, match=r"gone\.db"):
        await broker.ping()


async def test_seen_finds_inbox_keys_of_the_group_only(broker: SqliteBroker) -> None:
    first = await broker.subscribe("t", "g1")
    second = await broker.subscribe("t", "g2")
    await first.settle(Settlement(inbox=["src\x1f0001", "src\x1f0002"]))
    assert await first.seen(["src\x1f0001", "src\x1f0003", "src\x1f0002"]) == {"src\x1f0001", "src\x1f0002"}
    assert await second.seen(["src\x1f0001"]) == set()


async def test_inbox_keys_expire(open_broker: OpenBroker) -> None:
    from choreograph.core.clock import FakeClock

    clock = FakeClock()
    broker = open_broker(SqliteConfig(inbox_retention=60), clock=clock)
    sub = await broker.subscribe("t", "g")
    await sub.settle(Settlement(inbox=["old"]))
    clock.advance(120)
    await sub.settle(Settlement(inbox=["new"]))
    await broker.trim()
    assert await sub.seen(["old", "new"]) == {"new"}


async def test_outputs_are_appended_atomically_with_acks(broker: SqliteBroker) -> None:
    await broker.publish("in", [Record(b"1", key="k")])
    sub = await broker.subscribe("in", "g")
    out = await broker.subscribe("out", "g2")
    batch = await sub.fetch(10, 1.0)
    waiting = asyncio.create_task(out.fetch(10, 5.0))
    await asyncio.sleep(0)
    await sub.settle(Settlement(acks=list(batch), outputs=[("out", Record(b"derived", key="k"))]))
    assert [d.value for d in await asyncio.wait_for(waiting, 2.0)] == [b"derived"]
