"""NATS: every stream the broker creates carries the retention as max_age; the log's size; tail skips nothing."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import pytest
from typer.testing import CliRunner

from choreograph.brokers.nats import NatsBroker
from choreograph.core.broker import Position, Record
from choreograph.core.clock import FakeClock
from choreograph.ops.cli import cli
from tests.unit.ops.test_tail_complete import PARTITIONS, check_complete, fill

from .server import NatsServer


@pytest.mark.parametrize(
    ("option", "max_age"), [("", 7 * 86400.0), ("&retention=90s", 90.0), ("&max_age=none", 0.0), ("&retention=0", 0.0)]
)
async def test_the_stream_of_a_new_topic_has_the_retention_as_max_age(
    nats_server: NatsServer, option: str, max_age: float
) -> None:
    broker = NatsBroker.from_url(f"{nats_server.url}?prefix=ret{uuid.uuid4().hex[:8]}&partitions=2{option}")
    try:
        await broker.publish("t", [Record(b"1", "a"), Record(b"2", "b"), Record(b"3", "c")])
        info = await broker.jetstream.stream_info(broker.names.stream("t"))
        assert (info.config.max_age or 0.0) == max_age  # the client reads 0 (no limit) as None or 0
        size = await broker.log_size()
        assert size.records == {"t": 3} and size.bytes["t"] > 0
        line = broker.describe_retention().describe()
        assert line.startswith("log retention: 7 days (nats default;" if not option else "log retention: ")
    finally:
        await broker.close()


async def test_resolve_position_from_a_time_finds_each_partitions_first_record_since(nats_server: NatsServer) -> None:
    broker = NatsBroker.from_url(f"{nats_server.url}?prefix=res{uuid.uuid4().hex[:8]}&partitions=2")
    try:
        await broker.publish("t", [Record(b"before", "a"), Record(b"before", "b")])
        ends = await broker.resolve_position("t", Position.latest())
        await broker.publish("t", [Record(b"after", "a"), Record(b"after", "b")])
        read = await broker.read("t", Position.at_offsets(ends))
        assert [d.value for d in read] == [b"after", b"after"]
        assert await broker.resolve_position("t", Position.earliest()) == {0: 1, 1: 1}
    finally:
        await broker.close()


def test_tail_prints_every_record_of_every_partition(nats_server: NatsServer) -> None:
    url = f"{nats_server.url}?prefix=tail{uuid.uuid4().hex[:8]}&partitions={PARTITIONS}"

    async def given() -> None:
        broker = NatsBroker.from_url(url)  # JetStream stamps records itself: the fake clock only paces fill
        try:
            await fill(broker, FakeClock(time.time()), 3_000)
        finally:
            await broker.close()

    asyncio.run(given())
    result = CliRunner().invoke(cli, ["tail", "t", "--limit", "0", "--json", "--broker", url])
    assert result.exit_code == 0, result.output[-2000:]
    docs = [orjson.loads(line) for line in result.output.splitlines()]
    assert len(docs) == 3_000
    check_complete([(d["partition"], d["offset"], d["value"]["n"]) for d in docs], 3_000)
