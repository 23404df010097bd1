"""The SQLite log: appends, ordering, durability across reopen, positions, retention, lag."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from choreograph.brokers.sqlite import SqliteBroker, SqliteConfig
from choreograph.core.broker import (
    Broker,
    DeadLetterStore,
    Delivery,
    LagReporter,
    LogReader,
    Position,
    Record,
    Settlement,
    Subscription,
    TopicAdmin,
    partition_for,
)
from choreograph.core.clock import FakeClock
from tests.conftest import wait_until

from .conftest import OpenBroker


async def drain(sub: Subscription, expected: int, *, ack: bool = True, timeout: float = 5.0) -> list[Delivery]:
    """Fetch (and ack) until ``expected`` deliveries arrived or a fetch times out."""
    got: list[Delivery] = []
    while len(got) < expected:
        batch = await sub.fetch(1000, timeout)
        if not batch:
            break
        got.extend(batch)
        if ack:
            await sub.settle(Settlement(acks=list(batch)))
    return got


def by_key(deliveries: Sequence[Delivery]) -> dict[str | None, list[bytes]]:
    keyed: dict[str | None, list[bytes]] = {}
    for d in deliveries:
        keyed.setdefault(d.key, []).append(d.value)
    return keyed


async def test_implements_every_protocol(broker: SqliteBroker) -> None:
    sub = await broker.subscribe("t", "g")
    assert isinstance(broker, Broker)
    assert isinstance(broker, LagReporter | TopicAdmin | LogReader | DeadLetterStore)
    assert all(isinstance(broker, p) for p in (LagReporter, TopicAdmin, LogReader, DeadLetterStore))
    assert isinstance(sub, Subscription)
    caps = broker.capabilities
    assert caps.persistent and caps.replay and caps.lag and caps.native_delay
    assert caps.atomic_settle and caps.cross_process and caps.dead_letter_store and caps.per_key_order


async def test_round_trip_keeps_key_headers_and_unicode_bytes(broker: SqliteBroker) -> None:
    # Given records with keys, headers and non-ASCII content
    sent = [
        Record("héllo wörld ✓".encode(), key="clé-1", headers={"ce_type": "shop.örder", "x": "日本"}),
        Record(b"\x00\xffbinary", key=None, headers={}),
        Record(b"", key="k", headers={"empty": ""}),
    ]
    # When they are published and consumed
    await broker.publish("orders", sent)
    sub = await broker.subscribe("orders", "g")
    got = await drain(sub, 3)
    # Then everything comes back byte for byte
    received = {(d.key, d.value, tuple(sorted(d.headers.items()))) for d in got}
    assert received == {(r.key, r.value, tuple(sorted(r.headers.items()))) for r in sent}
    assert all(d.attempt == 1 and d.first_failure is None and d.timestamp > 0 for d in got)


async def test_keyed_records_land_on_partition_for_key(broker: SqliteBroker) -> None:
    await broker.publish("t", [Record(b"v", key=f"key-{i}") for i in range(20)])
    rows = await broker.read("t", limit=100)
    assert all(d.partition == partition_for(d.key, 4) for d in rows)


async def test_unkeyed_records_round_robin(broker: SqliteBroker) -> None:
    await broker.publish("t", [Record(b"v") for _ in range(8)])
    rows = await broker.read("t", limit=100)
    assert sorted(d.partition for d in rows) == [0, 0, 1, 1, 2, 2, 3, 3]


async def test_concurrent_publishers_all_land_in_per_key_order(broker: SqliteBroker) -> None:
    # Given 50 tasks each publishing 40 records one at a time, keys shared across tasks
    async def publisher(task: int) -> None:
        for i in range(40):
            await broker.publish("t", [Record(f"{task}:{i}".encode(), key=f"key-{task % 5}")])

    await asyncio.gather(*(publisher(t) for t in range(50)))
    # When read back
    rows = await broker.read("t", limit=10_000)
    # Then all 2000 landed, and each task's records keep their order within their key
    assert len(rows) == 2000
    for task in range(50):
        mine = [int(d.value.split(b":")[1]) for d in rows if d.value.startswith(f"{task}:".encode())]
        assert mine == list(range(40))


async def test_offsets_committed_only_by_settle(open_broker: OpenBroker) -> None:
    broker = open_broker()
    await broker.publish("t", [Record(f"{i}".encode(), key="k") for i in range(5)])
    sub = await broker.subscribe("t", "g")
    # When records are fetched but not settled
    got = await drain(sub, 5, ack=False)
    assert len(got) == 5
    assert sum(lag.lag for lag in await broker.lag("g")) == 5
    # Then a new member after a restart gets them again
    await broker.close()
    again = open_broker()
    sub = await again.subscribe("t", "g")
    redelivered = await drain(sub, 5, ack=False)
    assert [d.value for d in redelivered] == [d.value for d in got]
    # And once settled, lag is zero
    await sub.settle(Settlement(acks=list(redelivered)))
    assert sum(lag.lag for lag in await again.lag("g")) == 0


async def test_partial_ack_commits_only_the_settled_prefix(broker: SqliteBroker) -> None:
    await broker.publish("t", [Record(f"{i}".encode(), key="k") for i in range(4)])
    sub = await broker.subscribe("t", "g")
    got = await drain(sub, 4, ack=False)
    # When offsets 0, 1 and 3 are acked but 2 is not
    await sub.settle(Settlement(acks=[got[0], got[1], got[3]]))
    committed = {lag.partition: lag.committed for lag in await broker.lag("g")}
    assert committed[partition_for("k", 4)] == 2
    # Then settling 2 moves the commit past 3
    await sub.settle(Settlement(acks=[got[2]]))
    committed = {lag.partition: lag.committed for lag in await broker.lag("g")}
    assert committed[partition_for("k", 4)] == 4


async def test_restart_resumes_from_committed_offset(open_broker: OpenBroker) -> None:
    broker = open_broker()
    await broker.publish("t", [Record(f"{i}".encode(), key="k") for i in range(10)])
    sub = await broker.subscribe("t", "g")
    first = await sub.fetch(4, 1.0)
    await sub.settle(Settlement(acks=list(first)))
    await broker.close()
    # When the file is reopened
    reopened = open_broker()
    sub = await reopened.subscribe("t", "g")
    rest = await drain(sub, 6)
    # Then consumption resumes right after what was settled
    assert [d.value for d in first] == [b"0", b"1", b"2", b"3"]
    assert [d.value for d in rest] == [f"{i}".encode() for i in range(4, 10)]


async def test_two_groups_each_get_everything(broker: SqliteBroker) -> None:
    await broker.publish("t", [Record(f"{i}".encode(), key=f"k{i % 7}") for i in range(100)])
    first = await drain(await broker.subscribe("t", "a"), 100)
    second = await drain(await broker.subscribe("t", "b"), 100)
    assert sorted(d.value for d in first) == sorted(d.value for d in second)
    assert len(first) == 100


async def test_new_group_start_positions(broker: SqliteBroker, open_broker: OpenBroker) -> None:
    clock = FakeClock()
    timed = open_broker(clock=clock)
    await timed.publish("t", [Record(b"old-0", key="k"), Record(b"old-1", key="k")])
    clock.advance(60)
    boundary = clock.now()
    await timed.publish("t", [Record(b"new-0", key="k"), Record(b"new-1", key="k")])
    partition = partition_for("k", 4)

    earliest = await drain(await timed.subscribe("t", "earliest", start=Position.earliest()), 4)
    at_time = await drain(await timed.subscribe("t", "time", start=Position.at_time(boundary)), 2)
    at_offset = await drain(await timed.subscribe("t", "offs", start=Position.at_offsets({partition: 3})), 1)
    latest = await timed.subscribe("t", "latest", start=Position.latest())
    assert await latest.fetch(10, 0.05) == []
    await timed.publish("t", [Record(b"after", key="k")])

    assert [d.value for d in earliest] == [b"old-0", b"old-1", b"new-0", b"new-1"]
    assert [d.value for d in at_time] == [b"new-0", b"new-1"]
    assert [d.value for d in at_offset] == [b"new-1"]
    assert [d.value for d in await drain(latest, 1)] == [b"after"]


async def test_start_position_applies_only_to_a_new_group(broker: SqliteBroker) -> None:
    await broker.publish("t", [Record(b"a", key="k")])
    sub = await broker.subscribe("t", "g", start=Position.earliest())
    await sub.close()
    again = await broker.subscribe("t", "g", start=Position.latest())
    assert [d.value for d in await drain(again, 1)] == [b"a"]


async def test_log_reader_replays_without_joining_a_group(broker: SqliteBroker) -> None:
    await broker.publish("t", [Record(f"{i}".encode(), key="k") for i in range(5)])
    partition = partition_for("k", 4)
    assert [d.offset for d in await broker.read("t")] == [0, 1, 2, 3, 4]
    assert [d.offset for d in await broker.read("t", Position.at_offsets({partition: 2}), limit=2)] == [2, 3]
    assert await broker.read("t", Position.latest()) == []
    assert await broker.lag() == []


async def test_lag_is_published_minus_committed(broker: SqliteBroker) -> None:
    await broker.publish("t", [Record(b"v", key=f"k{i}") for i in range(30)])
    sub = await broker.subscribe("t", "g")
    batch = await sub.fetch(10, 1.0)
    await sub.settle(Settlement(acks=list(batch)))
    lags = await broker.lag("g")
    assert sum(lag.end_offset for lag in lags) == 30
    assert sum(lag.committed for lag in lags) == 10
    assert sum(lag.lag for lag in lags) == 20
    assert {lag.group for lag in await broker.lag()} == {"g"}


async def test_topics_lists_partitions_and_records(broker: SqliteBroker) -> None:
    await broker.publish("b", [Record(b"v")] * 3)
    await broker.publish("a", [Record(b"v")])
    infos = await broker.topics()
    assert [(t.name, t.partitions, t.records, t.end_offset) for t in infos] == [("a", 4, 1, 1), ("b", 4, 3, 3)]


async def test_retention_max_records_never_trims_uncommitted(open_broker: OpenBroker) -> None:
    broker = open_broker(SqliteConfig(partitions=1, retention_max_records=3))
    await broker.publish("t", [Record(f"{i}".encode()) for i in range(10)])
    sub = await broker.subscribe("t", "g")
    # Given the group committed only 5 of 10
    await sub.settle(Settlement(acks=list(await sub.fetch(5, 1.0))))
    # When retention runs
    assert await broker.trim() == 5
    # Then records the group has not committed survive, and it still gets them
    assert [d.value for d in await broker.read("t")] == [f"{i}".encode() for i in range(5, 10)]
    await sub.settle(Settlement(acks=list(await sub.fetch(10, 1.0))))
    assert await broker.trim() == 2
    assert [d.value for d in await broker.read("t")] == [b"7", b"8", b"9"]
    assert (await broker.topics())[0].records == 3


async def test_retention_can_ignore_groups(open_broker: OpenBroker) -> None:
    broker = open_broker(SqliteConfig(partitions=1, retention_max_records=2, retention_respect_groups=False))
    await broker.publish("t", [Record(f"{i}".encode()) for i in range(5)])
    await broker.subscribe("t", "g")
    assert await broker.trim() == 3


async def test_retention_max_age_trims_old_records(open_broker: OpenBroker) -> None:
    clock = FakeClock()
    broker = open_broker(SqliteConfig(partitions=1, retention_max_age=60), clock=clock)
    await broker.publish("t", [Record(b"old")])
    clock.advance(120)
    await broker.publish("t", [Record(b"new")])
    assert await broker.trim() == 1
    assert [d.value for d in await broker.read("t")] == [b"new"]


async def test_retention_runs_in_background(open_broker: OpenBroker) -> None:
    broker = open_broker(SqliteConfig(partitions=1, retention_max_records=1, retention_interval=0.05))
    await broker.publish("t", [Record(b"1"), Record(b"2"), Record(b"3")])

    async def trimmed() -> bool:
        return len(await broker.read("t")) == 1

    await wait_until(trimmed, what="background retention")


async def test_fetch_wakes_promptly_on_publish(broker: SqliteBroker) -> None:
    sub = await broker.subscribe("t", "g", start=Position.latest())
    waiting = asyncio.create_task(sub.fetch(10, 10.0))
    await asyncio.sleep(0)  # let the fetch start waiting
    await broker.publish("t", [Record(b"x")])
    got = await asyncio.wait_for(waiting, 2.0)
    assert [d.value for d in got] == [b"x"]


async def test_fetch_sees_publishes_from_another_connection(open_broker: OpenBroker) -> None:
    # A second broker on the same file stands in for another process: no in-process wake-up
    consumer, producer = open_broker(), open_broker()
    sub = await consumer.subscribe("t", "g", start=Position.latest())
    waiting = asyncio.create_task(sub.fetch(10, 10.0))
    await asyncio.sleep(0)
    await producer.publish("t", [Record(b"x")])
    got = await asyncio.wait_for(waiting, 2.0)
    assert [d.value for d in got] == [b"x"]


async def test_fetch_times_out_empty(broker: SqliteBroker) -> None:
    sub = await broker.subscribe("t", "g")
    assert await sub.fetch(10, 0.05) == []
