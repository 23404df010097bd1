"""Kafka broker health in /metrics: what a client sees in the cluster's metadata."""

from __future__ import annotations

import uuid

from tests.brokers.health_scrape import one, scrape_health

from .server import TansuServer


async def test_a_scrape_reads_brokers_and_partition_leadership(kafka_server: TansuServer) -> None:
    state = f"health-state-{uuid.uuid4().hex[:8]}"
    url = f"kafka://{kafka_server.bootstrap}?idempotent=false&persistent=false&state_topic={state}"
    scrape = await scrape_health(url)
    assert one(scrape, "choreograph_broker_health_up") == 1
    assert one(scrape, "choreograph_broker_kafka_brokers") == 1
    assert one(scrape, "choreograph_broker_kafka_topic_partitions", topic="health.probe") == 8
    assert one(scrape, "choreograph_broker_kafka_partitions_without_leader", topic="health.probe") == 0
    assert one(scrape, "choreograph_broker_kafka_partitions_under_replicated", topic="health.probe") == 0
