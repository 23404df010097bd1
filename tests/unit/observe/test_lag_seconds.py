"""Consumer lag in seconds: the age of the oldest record a group has not handled, on memory and SQLite."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from choreograph import App, FakeClock
from choreograph.brokers.memory import MemoryBroker
from choreograph.brokers.sqlite import SqliteBroker, SqliteConfig
from choreograph.core.broker import Broker, LagReporter, LogReader, Position, Record, Settlement
from choreograph.observe.lag_age import lag_seconds
from choreograph.observe.metrics import LAG_SECONDS, install_metrics
from tests.unit.observe.test_metrics import samples, value

GROUP = "svc.handler"


async def ack_first(broker: Broker, topic: str, per_partition: int) -> None:
    """Commit the first ``per_partition`` records of every partition for GROUP."""
    sub = await broker.subscribe(topic, GROUP, start=Position.earliest())
    deliveries = list(await sub.fetch(100, 1.0))
    acks = [d for d in deliveries if d.offset < per_partition]
    await sub.settle(Settlement(acks=acks))
    await sub.close()


@pytest.fixture(params=["memory", "sqlite"])
async def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Broker:
    clock = FakeClock()
    if request.param == "memory":
        return MemoryBroker(partitions=2, clock=clock)
    return SqliteBroker(tmp_path / "lag.db", SqliteConfig(partitions=2))


async def test_lag_seconds_is_the_age_of_the_record_at_the_committed_position(broker: Broker) -> None:
    # Given 4 records per partition (keys a and d hash to partitions 1 and 0), a group that committed 1 of each
    clock = getattr(broker, "clock", None)
    for i in range(4):
        if isinstance(clock, FakeClock):
            clock.advance(10.0)
        await broker.publish("orders", [Record(f"{i}".encode(), key="a"), Record(f"{i}".encode(), key="d")])
    await ack_first(broker, "orders", 1)
    assert isinstance(broker, LagReporter) and isinstance(broker, LogReader)
    rows = await broker.lag(GROUP)
    assert {row.lag for row in rows} == {3}
    records = await broker.read("orders", Position.earliest(), limit=100)
    second = {d.partition: d.timestamp for d in records if d.offset == 1}  # the oldest unhandled, per partition
    now = max(d.timestamp for d in records) + 5.0
    # When measured
    ages = await lag_seconds(broker, rows, now)
    # Then each partition's age is now minus the append time of its record at offset 1 (not 0, not the last)
    assert ages == {(GROUP, "orders", p): pytest.approx(now - second[p]) for p in (0, 1)}
    await broker.close()


async def test_a_caught_up_group_is_zero_seconds_behind(broker: Broker) -> None:
    await broker.publish("orders", [Record(b"1", key="a"), Record(b"2", key="d")])
    await ack_first(broker, "orders", 5)
    assert isinstance(broker, LagReporter) and isinstance(broker, LogReader)
    rows = await broker.lag(GROUP)
    assert await lag_seconds(broker, rows, 1e12) == {(GROUP, "orders", p): 0.0 for p in (0, 1)}
    await broker.close()


async def test_the_scrape_exports_the_gauge() -> None:
    clock = FakeClock()
    broker = MemoryBroker(partitions=1, clock=clock)
    app = App("lagging", broker=broker, clock=clock)
    metrics = install_metrics(app)
    await broker.publish("orders", [Record(b"1"), Record(b"2")])
    await ack_first(broker, "orders", 1)
    clock.advance(42.0)
    scrape = samples(await metrics.scrape())
    assert value(scrape, LAG_SECONDS, group=GROUP, topic="orders", partition="0") == pytest.approx(42.0)
    await app.close()


def test_the_lag_command_shows_the_age_per_partition_and_per_group(tmp_path: Path) -> None:
    import asyncio
    import json

    import typer
    from typer.testing import CliRunner

    from choreograph.ops.log_cli import register

    path = tmp_path / "cli.db"

    async def prepare() -> float:
        broker = SqliteBroker(path, SqliteConfig(partitions=2))
        await broker.publish("orders", [Record(b"1", key="d"), Record(b"2", key="d")])  # both on partition 0
        await ack_first(broker, "orders", 1)
        [second] = [d for d in await broker.read("orders", Position.earliest()) if d.offset == 1]
        await broker.close()
        return second.timestamp

    appended = asyncio.run(prepare())
    cli = typer.Typer()
    register(cli)
    before = time.time()
    result = CliRunner().invoke(cli, ["lag", "--partitions", "--json", "--broker", f"sqlite:///{path}"])
    after = time.time()
    assert result.exit_code == 0, result.output
    rows = {row["partition"]: row for row in map(json.loads, result.output.splitlines())}
    assert rows[1]["lag_seconds"] == 0.0  # caught up (nothing there)
    # the age of the second record (the oldest unhandled), measured while the command ran
    assert before - appended <= rows[0]["lag_seconds"] <= after - appended and rows[0]["lag"] == 1
    table = CliRunner().invoke(cli, ["lag", "--broker", f"sqlite:///{path}"], env={"COLUMNS": "200"})
    assert "oldest" in table.output and re.search(r"│ \d+\.\ds\s+│", table.output), table.output
