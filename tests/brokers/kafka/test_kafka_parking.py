"""Sequenced parking on Kafka (Tansu): a failing key's later events wait and are released in order."""

from __future__ import annotations

import uuid

from choreograph.brokers import open_broker
from choreograph.testing.parking_scenarios import sequenced_parking

from .server import TansuServer


async def test_sequenced_parking(kafka_server: TansuServer) -> None:
    state = f"__state_{uuid.uuid4().hex[:8]}"
    broker = open_broker(
        f"kafka://{kafka_server.bootstrap}?partitions=2&idempotent=false&persistent=false&state_topic={state}"
    )
    try:
        await sequenced_parking(broker)
    finally:
        await broker.close()
