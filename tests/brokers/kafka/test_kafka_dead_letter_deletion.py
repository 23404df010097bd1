"""Kafka: ``purge(delete=True)`` writes tombstones for dead letters on the compacted state topic."""

from __future__ import annotations

import uuid

from choreograph.brokers.kafka import KafkaBroker
from tests.brokers.dead_letter_deletion import check_dead_letter_deletion, dead_letter_records

from .server import TansuServer

OPTIONS = "partitions=2&idempotent=false&persistent=false&session_timeout=6&heartbeat_interval=1"


def _url(server: TansuServer, state_topic: str) -> str:
    return f"kafka://{server.bootstrap}?{OPTIONS}&state_topic={state_topic}"


async def test_deleted_dead_letters_cannot_be_read_or_listed(kafka_server: TansuServer) -> None:
    broker = KafkaBroker.from_url(_url(kafka_server, f"__choreograph_state_{uuid.uuid4().hex[:8]}"))
    try:
        await check_dead_letter_deletion(broker)
    finally:
        await broker.close()


async def test_a_deletion_holds_for_a_broker_that_reads_the_state_topic_afresh(kafka_server: TansuServer) -> None:
    state_topic = f"__choreograph_state_{uuid.uuid4().hex[:8]}"
    broker = KafkaBroker.from_url(_url(kafka_server, state_topic))
    try:
        [letter] = await dead_letter_records(broker, [b"gone"])
        assert await broker.purge([letter.id], delete=True) == 1
    finally:
        await broker.close()
    # A new process rebuilds its state from the topic: the tombstone wins over the stored letter
    reopened = KafkaBroker.from_url(_url(kafka_server, state_topic))
    try:
        assert await reopened.dead_letters(status=None) == []
    finally:
        await reopened.close()
