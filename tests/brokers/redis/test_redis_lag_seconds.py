"""Redis: lag in seconds is the age of the record at the group's committed position."""

from __future__ import annotations

import uuid

from choreograph.brokers.redis import RedisBroker
from tests.brokers.lag_seconds import check_lag_seconds

from .server import RedisServer


async def test_lag_seconds_is_exact(redis_server: RedisServer) -> None:
    broker = RedisBroker.from_url(f"{redis_server.url}?prefix=l{uuid.uuid4().hex[:8]}&partitions=2&poll_interval=0.05")
    try:
        await check_lag_seconds(broker)
    finally:
        await broker.close()
