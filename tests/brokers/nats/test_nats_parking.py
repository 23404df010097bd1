"""Sequenced parking on a real NATS JetStream: a failing key's later events wait and are released in order."""

from __future__ import annotations

import uuid

from choreograph.brokers import open_broker
from choreograph.testing.parking_scenarios import sequenced_parking

from .server import NatsServer


async def test_sequenced_parking(nats_server: NatsServer) -> None:
    broker = open_broker(f"{nats_server.url}?prefix=park{uuid.uuid4().hex[:8]}&partitions=2")
    try:
        await sequenced_parking(broker)
    finally:
        await broker.close()
