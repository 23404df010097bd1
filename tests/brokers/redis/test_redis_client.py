"""Redis: a broker can use a client the application made, and leaves it open when it closes."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from choreograph.brokers.redis import RedisBroker, RedisConfig
from choreograph.core.broker import Record
from choreograph.core.errors import ConfigurationError

from .server import RedisServer


async def test_a_client_handed_in_is_used_and_left_open(redis_server: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    config = RedisConfig(url=redis_server.url, prefix=f"c{uuid.uuid4().hex[:8]}", partitions=1)
    broker = RedisBroker(config, client=client)
    try:
        assert broker.client is client
        await broker.publish("orders", [Record(b"v", key="k")])
        assert [d.value for d in await broker.read("orders")] == [b"v"]
    finally:
        await broker.close()
    assert await client.ping()  # still open: it is the application's
    await client.aclose()


def test_a_client_that_decodes_replies_is_refused(redis_server: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    with pytest.raises(ConfigurationError, match="decode_responses=False"):
        RedisBroker(RedisConfig(url=redis_server.url), client=client)
