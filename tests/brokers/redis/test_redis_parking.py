"""Sequenced parking on a real Redis: a failing key's later events wait and are released in order."""

from __future__ import annotations

import uuid

from choreograph.brokers import open_broker
from choreograph.testing.parking_scenarios import sequenced_parking

from .server import RedisServer


async def test_sequenced_parking(redis_server: RedisServer) -> None:
    broker = open_broker(f"{redis_server.url}?prefix=park{uuid.uuid4().hex[:8]}&partitions=2&poll_interval=0.05")
    try:
        await sequenced_parking(broker)
    finally:
        await broker.close()
