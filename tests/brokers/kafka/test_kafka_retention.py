"""Kafka: topics the broker creates carry the retention as retention.ms; the log's size; positions resolve."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from typer.testing import CliRunner

from choreograph.brokers.kafka import KafkaBroker
from choreograph.core.broker import Position, Record
from choreograph.ops.cli import cli
from tests.unit.ops.test_tail_complete import PARTITIONS, check_complete

from .server import TansuServer


async def topic_config(server: TansuServer, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=server.bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    ((_, _, _, _, entries),) = response.resources
    return {entry[0]: entry[1] for entry in entries}


@pytest.mark.parametrize(("option", "ms"), [("", "604800000"), ("&retention=2h", "7200000"), ("&retention=none", "-1")])
async def test_a_created_topic_has_the_retention_as_retention_ms(
    kafka_server: TansuServer, option: str, ms: str
) -> None:
    topic = f"ret{uuid.uuid4().hex[:8]}"
    broker = KafkaBroker.from_url(
        f"kafka://{kafka_server.bootstrap}?partitions=2&idempotent=false&persistent=false{option}"
    )
    try:
        await broker.publish(topic, [Record(b"1", "a"), Record(b"2", "b"), Record(b"3", "c")])
        assert (await topic_config(kafka_server, topic)).get("retention.ms") == ms
        size = await broker.log_size()
        assert size.records[topic] == 3
        ends = await broker.resolve_position(topic, Position.latest())
        await broker.publish(topic, [Record(b"4", "a")])
        assert [d.value for d in await broker.read(topic, Position.at_offsets(ends))] == [b"4"]
    finally:
        await broker.close()


def test_tail_prints_every_record_of_every_partition(kafka_server: TansuServer) -> None:
    topic = f"tail{uuid.uuid4().hex[:8]}"
    url = f"kafka://{kafka_server.bootstrap}?partitions={PARTITIONS}&idempotent=false&persistent=false"

    async def given() -> None:
        broker = KafkaBroker.from_url(url)
        try:
            for start in range(0, 2_000, 100):
                records = [Record(orjson.dumps({"n": n}), key=f"k{n % 64}") for n in range(start, start + 100)]
                await broker.publish(topic, records)
        finally:
            await broker.close()

    asyncio.run(given())
    result = CliRunner().invoke(cli, ["tail", topic, "--limit", "0", "--json", "--broker", url])
    assert result.exit_code == 0, result.output[-2000:]
    docs = [orjson.loads(line) for line in result.output.splitlines()]
    assert len(docs) == 2_000
    check_complete([(d["partition"], d["offset"], d["value"]["n"]) for d in docs], 2_000)
