"""NATS: lag in seconds is exact (rows carry the consumer's ack floor; reads address stream sequences)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import typer
from typer.testing import CliRunner, Result

from choreograph.brokers.nats import NatsBroker
from choreograph.core.broker import Delivery, Position, Record, Settlement
from choreograph.observe.lag_age import lag_seconds
from choreograph.ops.log_cli import register
from tests.brokers.lag_seconds import check_lag_seconds

from .server import NatsServer

GROUP = "lagsec.interleaved"


def _cli(args: list[str]) -> Result:
    cli = typer.Typer()
    register(cli)
    return CliRunner().invoke(cli, args)


async def test_lag_seconds_is_exact(nats_server: NatsServer) -> None:
    broker = NatsBroker.from_url(f"{nats_server.url}?prefix=l{uuid.uuid4().hex[:8]}&ack_wait=3&lease_timeout=3")
    try:
        await check_lag_seconds(broker)
    finally:
        await broker.close()


async def test_lag_seconds_is_exact_when_partitions_interleave_and_acks_skip(nats_server: NatsServer) -> None:
    """Stream sequences diverge from per-partition counts, and an ack past the oldest leaves the floor behind."""
    url = f"{nats_server.url}?prefix=l{uuid.uuid4().hex[:8]}&partitions=2&ack_wait=30&lease_timeout=30"
    broker = NatsBroker.from_url(url)
    try:
        topic = f"lagsec.{uuid.uuid4().hex[:8]}"
        for i in range(12):  # keys spread over both partitions, interleaved in the stream
            await broker.publish(topic, [Record(str(i).encode(), key=f"k{i}")])
        sub = await broker.subscribe(topic, GROUP, start=Position.earliest())
        got: list[Delivery] = []
        deadline = time.monotonic() + 30
        while len(got) < 12 and time.monotonic() < deadline:
            got.extend(await sub.fetch(12, 1.0))
        assert len(got) == 12, got
        by_partition = {p: sorted((d for d in got if d.partition == p), key=lambda d: d.offset) for p in (0, 1)}
        assert all(len(records) >= 3 for records in by_partition.values()), by_partition
        # Stream sequences are not per-partition counts here (what made the old figure an upper bound).
        assert any(d.offset != i + 1 for records in by_partition.values() for i, d in enumerate(records))
        # Per partition: the first and the third are handled, the second is the oldest unhandled.
        await sub.settle(Settlement(acks=[d for records in by_partition.values() for d in (records[0], records[2])]))
        rows = [row for row in await broker.lag(GROUP) if row.topic == topic]
        assert {row.partition: row.lag for row in rows} == {p: len(r) - 2 for p, r in by_partition.items()}
        now = time.time() + 5.0
        ages = await lag_seconds(broker, rows, now)
        for p, records in by_partition.items():
            expected = now - records[1].timestamp
            assert abs(ages[(GROUP, topic, p)] - expected) < 1e-6, (p, ages, expected)
        # choreograph lag's oldest column is the same figure, measured while the command runs
        before = time.time()
        result = await asyncio.to_thread(_cli, ["lag", "--partitions", "--json", "--broker", url])
        after = time.time()
        assert result.exit_code == 0, result.output
        shown = {row["partition"]: row for row in map(json.loads, result.output.splitlines()) if row["topic"] == topic}
        for p, records in by_partition.items():
            oldest = records[1].timestamp
            assert before - oldest - 1e-3 <= shown[p]["lag_seconds"] <= after - oldest + 1e-3, (p, shown, oldest)
        await sub.close()
    finally:
        await broker.close()
