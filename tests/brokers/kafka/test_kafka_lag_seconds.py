"""Kafka: lag in seconds is the age of the record at the group's committed offset."""

from __future__ import annotations

import uuid

from choreograph.brokers.kafka import KafkaBroker
from tests.brokers.lag_seconds import check_lag_seconds

from .server import TansuServer

OPTIONS = "partitions=2&idempotent=false&persistent=false&session_timeout=6&heartbeat_interval=1"


async def test_lag_seconds_is_exact(kafka_server: TansuServer) -> None:
    state = f"__choreograph_state_{uuid.uuid4().hex[:8]}"
    broker = KafkaBroker.from_url(f"kafka://{kafka_server.bootstrap}?{OPTIONS}&state_topic={state}")
    try:
        await check_lag_seconds(broker)
    finally:
        await broker.close()
