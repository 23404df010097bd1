"""Redis: the default retention trims by age (XTRIM MINID), the log's size is counted, tail skips nothing."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
from typer.testing import CliRunner

from choreograph.brokers.redis import RedisBroker
from choreograph.core.broker import Record
from choreograph.core.clock import FakeClock
from choreograph.ops.cli import cli
from tests.unit.ops.test_tail_complete import PARTITIONS, check_complete, fill

from .server import RedisServer

DAY = 86400.0


async def test_records_past_the_default_retention_are_trimmed_by_a_publishing_broker(redis_server: RedisServer) -> None:
    # Given records published 8 days ago on a broker with no retention option
    url = f"{redis_server.url}?prefix=r{uuid.uuid4().hex[:8]}&partitions=2"
    clock = FakeClock(time.time() - 8 * DAY)
    old = RedisBroker.from_url(url, clock=clock)
    young = RedisBroker.from_url(url)
    try:
        assert old.config.retention == 7 * DAY
        await old.publish("t", [Record(f"old{i}".encode(), f"k{i}") for i in range(20)])
        # When a broker of today publishes (its first publish runs the periodic trim)
        await young.publish("t", [Record(b"new", "k1")])
        # Then only today's record is left, in the streams themselves
        lengths = [await young.client.xlen(young.keys.stream("t", p)) for p in range(2)]
        assert sum(lengths) == 1
        assert [d.value for d in await young.read("t")] == [b"new"]
        # and the log's size says so: one entry, some bytes
        size = await young.log_size()
        assert size.records == {"t": 1}
        assert size.bytes["t"] > 0
        assert young.describe_retention().describe().startswith("log retention: 7 days (redis default;")
    finally:
        await old.close()
        await young.close()


async def test_keep_forever_trims_nothing(redis_server: RedisServer) -> None:
    url = f"{redis_server.url}?prefix=r{uuid.uuid4().hex[:8]}&partitions=1&retention=none"
    old = RedisBroker.from_url(url, clock=FakeClock(time.time() - 400 * DAY))
    young = RedisBroker.from_url(url)
    try:
        await old.publish("t", [Record(b"ancient")])
        await young.publish("t", [Record(b"new")])
        assert [d.value for d in await young.read("t")] == [b"ancient", b"new"]
        assert "forever" in young.describe_retention().describe()
    finally:
        await old.close()
        await young.close()


def test_tail_prints_every_record_of_every_partition(redis_server: RedisServer) -> None:
    # Given 3,000 records over 8 partitions, stamped over 30 seconds
    url = f"{redis_server.url}?prefix=tail{uuid.uuid4().hex[:8]}&partitions={PARTITIONS}"

    async def given() -> None:
        clock = FakeClock(time.time() - 120)
        broker = RedisBroker.from_url(url, clock=clock)
        try:
            await fill(broker, clock, 3_000)
        finally:
            await broker.close()

    asyncio.run(given())
    # When tail prints them all
    result = CliRunner().invoke(cli, ["tail", "t", "--limit", "0", "--json", "--broker", url])
    # Then each once, each partition in offset order
    assert result.exit_code == 0, result.output[-2000:]
    docs = [orjson.loads(line) for line in result.output.splitlines()]
    assert len(docs) == 3_000
    check_complete([(d["partition"], d["offset"], d["value"]["n"]) for d in docs], 3_000)
