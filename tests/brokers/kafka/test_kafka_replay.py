"""Kafka resets a group only while it has no live member (see brokers/kafka/reset.py)."""

from __future__ import annotations

import uuid

import pytest

from choreograph.brokers.kafka import KafkaBroker
from choreograph.core.broker import Position, Record, Settlement
from choreograph.core.group_admin import GroupActive
from tests.unit.replay.replay_audit import audited_group_start

from .server import TansuServer

OPTIONS = "partitions=4&idempotent=false&persistent=false&session_timeout=6&heartbeat_interval=1"


async def test_a_reset_while_a_member_lives_is_refused_and_moves_nothing(kafka_server: TansuServer) -> None:
    url = f"kafka://{kafka_server.bootstrap}?{OPTIONS}&state_topic=__state_{uuid.uuid4().hex[:8]}"
    broker = KafkaBroker.from_url(url)
    topic, group = f"reset.{uuid.uuid4().hex[:8]}", "live"
    try:
        await broker.publish(topic, [Record(f"v{i}".encode(), key=f"k{i}") for i in range(8)])
        member = await broker.subscribe(topic, group)
        taken: list[int] = []
        while len(taken) < 8:
            batch = await member.fetch(8, 1.0)
            await member.settle(Settlement(acks=list(batch)))
            taken += [d.offset for d in batch]
        committed = await broker.group_positions(topic, group)
        with pytest.raises(GroupActive):
            await broker.reset_group(topic, group, Position.earliest())
        assert sum((await broker.group_positions(topic, group)).values()) == sum(committed.values()) == 8
        await member.close()
    finally:
        await broker.close()


async def test_a_range_replays_through_a_handler_as_a_new_group(kafka_server: TansuServer) -> None:
    from tests.unit.replay.test_replay_handler import replay_through_handler

    url = f"kafka://{kafka_server.bootstrap}?{OPTIONS}&state_topic=__state_{uuid.uuid4().hex[:8]}"
    broker = KafkaBroker.from_url(url)
    try:
        await replay_through_handler(broker, timeout=30.0)
    finally:
        await broker.close()


def test_a_group_started_at_earliest_is_audited_with_the_records_it_will_read(kafka_server: TansuServer) -> None:
    url = f"kafka://{kafka_server.bootstrap}?{OPTIONS}&state_topic=__state_{uuid.uuid4().hex[:8]}"
    assert audited_group_start(url) == [40]
