"""How the Redis broker lays records, acks and inbox keys out in Redis, checked on a real redis-server.

The conformance suite proves the behaviour; these tests pin what it cannot see:
stream trimming, the fields a record is read back from, and the retry state and
inbox entries a settlement leaves behind.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from choreograph.brokers.redis import RedisBroker, RedisSubscription
from choreograph.core.broker import Delivery, Record, Settlement
from choreograph.core.clock import FakeClock

from .server import RedisServer


@pytest.fixture
async def broker(redis_server: RedisServer) -> AsyncIterator[RedisBroker]:
    """A broker with its own key prefix, two partitions and a fake clock."""
    url = f"{redis_server.url}?prefix=l{uuid.uuid4().hex[:8]}&partitions=2&retention_interval=0.05"
    broker = RedisBroker.from_url(url, clock=FakeClock())
    yield broker
    await broker.close()


def _clock(broker: RedisBroker) -> FakeClock:
    assert isinstance(broker.clock, FakeClock)
    return broker.clock


async def _fetch_all(
    broker: RedisBroker, topic: str, group: str, count: int
) -> tuple[RedisSubscription, list[Delivery]]:
    subscription: RedisSubscription = await broker.subscribe(topic, group)
    got: list[Delivery] = []
    for _ in range(50):
        got += await subscription.fetch(count - len(got), 0.1)
        if len(got) >= count:
            break
    return subscription, got


async def test_records_read_back_with_their_key_headers_and_value(broker: RedisBroker) -> None:
    # Given records with and without a key and headers, over both partitions
    records = [
        Record(b"keyed", "k1"),
        Record(b"keyless", None, {"h": "1"}),
        Record(b"both", "k2", {"trace": "x", "n": "2"}),
        Record(b"", "k3"),
    ]
    await broker.publish("t", records)

    # When a group reads them
    _, got = await _fetch_all(broker, "t", "g", len(records))

    # Then each comes back as published, stamped with the clock's time, at dense offsets per partition
    assert sorted((d.value, d.key, dict(d.headers)) for d in got) == sorted(
        (r.value, r.key, dict(r.headers)) for r in records
    )
    assert {d.timestamp for d in got} == {_clock(broker).now()}
    for p in {d.partition for d in got}:
        assert sorted(d.offset for d in got if d.partition == p) == list(range(sum(d.partition == p for d in got)))


async def test_one_publish_over_several_partitions_hands_out_dense_offsets(broker: RedisBroker) -> None:
    # Given two publishes whose keys spread over both partitions
    keys = [f"k{i}" for i in range(20)]
    await broker.publish("t", [Record(f"a{i}".encode(), k) for i, k in enumerate(keys)])
    await broker.publish("t", [Record(f"b{i}".encode(), k) for i, k in enumerate(keys)])

    # When the topic is read from the start
    read = await broker.read("t", limit=100)

    # Then every partition holds offsets 0..n-1, each key's records in publish order
    assert len(read) == 40
    for p in (0, 1):
        assert [d.offset for d in read if d.partition == p] == list(range(sum(d.partition == p for d in read)))
    for k in keys:
        assert [d.value[:1] for d in read if d.key == k] == [b"a", b"b"]


async def test_max_length_trims_each_partition_stream_on_publish(redis_server: RedisServer) -> None:
    # Given a broker that keeps about 100 entries per partition
    url = f"{redis_server.url}?prefix=m{uuid.uuid4().hex[:8]}&partitions=1&max_length=100"
    broker = RedisBroker.from_url(url)
    try:
        # When 1,000 records are published in chunks
        for start in range(0, 1000, 250):
            await broker.publish("t", [Record(b"x", f"k{i}") for i in range(start, start + 250)])

        # Then the stream was cut down to about max_length (whole macro nodes: ~), offsets still counting on
        length = await broker.client.xlen(broker.keys.stream("t", 0))
        assert 100 <= length < 250
        (info,) = await broker.topics()
        assert info.end_offset == 1000
    finally:
        await broker.close()


async def test_settled_records_leave_no_retry_state_and_their_keys_in_the_inbox(broker: RedisBroker) -> None:
    # Given a record that failed once and was retried
    await broker.publish("t", [Record(b"v", "k")])
    subscription, (first,) = await _fetch_all(broker, "t", "g", 1)
    await subscription.settle(Settlement(retries=[(first, 0.0)]))
    g = broker.keys.group("t", "g")
    assert await broker.client.exists(g.retries(first.partition), g.attempts(first.partition)) == 2
    (again,) = await subscription.fetch(1, 2.0)
    assert again.attempt == 2

    # When the retry succeeds and is settled with its dedupe key
    await subscription.settle(Settlement(acks=[again], inbox=["src\x1fid-1"]))

    # Then nothing of the retry is left, the record is acked, and the inbox answers for the key
    assert await broker.client.exists(g.retries(first.partition), g.attempts(first.partition)) == 0
    assert (await broker.client.xpending(broker.keys.stream("t", first.partition), "g"))["pending"] == 0
    assert await subscription.seen(["src\x1fid-1", "src\x1fid-2"]) == {"src\x1fid-1"}


async def test_a_settlement_with_outputs_commits_acks_inbox_and_outputs_together(broker: RedisBroker) -> None:
    # Given two records read by a group
    await broker.publish("in", [Record(b"1", "a"), Record(b"2", "b")])
    subscription, got = await _fetch_all(broker, "in", "g", 2)

    # When both are settled with an output each and their dedupe keys
    outputs = [("out", Record(b"o" + d.value, d.key)) for d in got]
    await subscription.settle(Settlement(acks=got, outputs=outputs, inbox=["s\x1f1", "s\x1f2"]))

    # Then the outputs are in the other topic, the inputs acked, the keys remembered
    assert sorted(d.value for d in await broker.read("out")) == [b"o1", b"o2"]
    assert [lag.lag for lag in await broker.lag("g") if lag.topic == "in"] == [0, 0]
    assert await subscription.seen(["s\x1f1", "s\x1f2"]) == {"s\x1f1", "s\x1f2"}


async def test_inbox_keys_older_than_the_retention_are_trimmed_at_a_later_settle(broker: RedisBroker) -> None:
    # Given a key remembered at the start
    await broker.publish("t", [Record(b"1", "a")])
    subscription, (first,) = await _fetch_all(broker, "t", "g", 1)
    await subscription.settle(Settlement(acks=[first], inbox=["old"]))

    # When more than inbox_retention passes (and the trim interval), and another batch is settled
    _clock(broker).advance(broker.config.inbox_retention + 1)
    await asyncio.sleep(broker.config.retention_interval * 2)
    await broker.publish("t", [Record(b"2", "a")])
    (second,) = await subscription.fetch(1, 2.0)
    await subscription.settle(Settlement(acks=[second], inbox=["new"]))

    # Then only the new key is left
    assert await subscription.seen(["old", "new"]) == {"new"}


async def test_a_settlement_larger_than_the_scripts_chunks_commits_whole(redis_server: RedisServer) -> None:
    # Given 2,500 records on one partition, fetched in one batch
    broker = RedisBroker.from_url(f"{redis_server.url}?prefix=c{uuid.uuid4().hex[:8]}&partitions=1")
    try:
        await broker.publish("t", [Record(str(i).encode(), f"k{i % 7}") for i in range(2500)])
        subscription, got = await _fetch_all(broker, "t", "g", 2500)
        keys = [f"s\x1f{d.offset}" for d in got]

        # When all of them are acked with a dedupe key each (the ack script works in chunks of 1,000 / 500)
        await subscription.settle(Settlement(acks=got, inbox=keys))

        # Then every record is acked and every key remembered
        assert (await broker.client.xpending(broker.keys.stream("t", 0), "g"))["pending"] == 0
        assert await subscription.seen(keys) == set(keys)
        assert await broker.client.zcard(broker.keys.group("t", "g").inbox) == 2500
    finally:
        await broker.close()


async def test_a_fetch_during_a_settle_rebalances_only_after_the_settle(broker: RedisBroker) -> None:
    # Given a member that holds records and learns of a new group generation (another member came)
    await broker.publish("t", [Record(f"v{i}".encode(), f"k{i}") for i in range(4)])
    subscription, got = await _fetch_all(broker, "t", "g", 4)
    rebalanced_while_settling: list[bool] = []
    rebalance = subscription._rebalance

    async def watched() -> None:
        rebalanced_while_settling.append(subscription._settling is not None)
        await rebalance()

    subscription._rebalance = watched  # type: ignore[method-assign]
    subscription._lease.seen_generation += 1
    # When the next fetch starts while the settle of what it holds is in flight (read-ahead)
    settling = asyncio.ensure_future(subscription.settle(Settlement(acks=got)))
    await asyncio.sleep(0)
    assert subscription._settling is not None, "the settle is waiting for Redis"
    fetched = await subscription.fetch(10, 0.2)
    await settling
    # Then the rebalance (which could hand the partitions to another member) waited for the settle,
    # and nothing acked came back
    assert rebalanced_while_settling == [False]
    assert fetched == []
    await subscription.close()
