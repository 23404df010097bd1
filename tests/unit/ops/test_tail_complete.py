"""``choreograph tail`` reads by offset per partition: every record, once, in offset order per partition."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from choreograph.brokers.memory import MemoryBroker
from choreograph.brokers.sqlite import SqliteBroker, SqliteConfig
from choreograph.core.broker import Broker, Delivery, LogReader, Position, Record
from choreograph.core.clock import FakeClock
from choreograph.ops.cli import cli
from choreograph.ops.log_cli import read_all, start_offsets

TOTAL = 20_000
PARTITIONS = 8
EARLIEST = Position.earliest()
ROOT = Path(__file__).resolve().parents[3]


async def fill(broker: Broker, clock: FakeClock, total: int = TOTAL) -> None:
    """Publish ``total`` records over every partition, 100 per call, a second apart per call.

    Time moves on between calls, so a reader that pages by time (the old tail)
    jumps over most of the other partitions' records.
    """
    for start in range(0, total, 100):
        await broker.publish("t", [Record(orjson.dumps({"n": n}), key=f"k{n % 64}") for n in range(start, start + 100)])
        clock.advance(1.0)


async def fill_file(path: Path, total: int) -> None:
    """Fill a SQLite log at ``path``, stamped over the last minutes (well inside the default retention)."""
    clock = FakeClock(time.time() - total / 100 - 60)
    broker = SqliteBroker(path, SqliteConfig(partitions=PARTITIONS), clock=clock)
    try:
        await fill(broker, clock, total)
    finally:
        await broker.close()


def check_complete(docs: list[tuple[int, int, int]], total: int = TOTAL) -> None:
    """Every n once; within each partition, offsets strictly increase."""
    assert sorted(n for _, _, n in docs) == list(range(total))
    by_partition: dict[int, list[int]] = defaultdict(list)
    for partition, offset, _ in docs:
        by_partition[partition].append(offset)
    assert len(by_partition) == PARTITIONS
    for offsets in by_partition.values():
        assert offsets == sorted(set(offsets))


async def collect(broker: Broker, start: Position = EARLIEST, limit: int = 0) -> list[Delivery]:
    assert isinstance(broker, LogReader)
    offsets, since = await start_offsets(broker, "t", start)
    return [d async for page in read_all(broker, "t", offsets, since, limit) for d in page]


def triples(deliveries: list[Delivery]) -> list[tuple[int, int, int]]:
    return [(d.partition, d.offset, orjson.loads(d.value)["n"]) for d in deliveries]


def test_tail_limit_0_json_prints_every_record_of_every_partition(tmp_path: Path) -> None:
    # Given 20,000 records over 8 partitions of a SQLite log, stamped over 200 seconds
    path = tmp_path / "tail.db"

    asyncio.run(fill_file(path, TOTAL))
    # When tail prints all of them as JSON
    result = CliRunner().invoke(cli, ["tail", "t", "--limit", "0", "--json", "--broker", f"sqlite:///{path}"])
    # Then exactly 20,000 lines, each record once, each partition in offset order
    assert result.exit_code == 0, result.output[-2000:]
    lines = result.output.splitlines()
    assert len(lines) == TOTAL
    docs = [orjson.loads(line) for line in lines]
    check_complete([(d["partition"], d["offset"], d["value"]["n"]) for d in docs])


async def test_memory_log_is_read_whole_by_offset() -> None:
    clock = FakeClock()
    broker = MemoryBroker(partitions=PARTITIONS, clock=clock)
    await fill(broker, clock)
    check_complete(triples(await collect(broker)))


async def test_sqlite_from_a_time_starts_each_partition_at_its_first_record_since(tmp_path: Path) -> None:
    clock = FakeClock()
    broker = SqliteBroker(tmp_path / "t.db", SqliteConfig(partitions=PARTITIONS), clock=clock)
    try:
        await fill(broker, clock, total=5_000)
        since = clock.now() - 25.0  # the last 25 calls of 100 records
        got = await collect(broker, Position.at_time(since))
        assert sorted(orjson.loads(d.value)["n"] for d in got) == list(range(2_500, 5_000))
        # and a limit stops after exactly that many
        assert len(await collect(broker, limit=1_234)) == 1_234
    finally:
        await broker.close()


class _TimeOnly:
    """A log reader that resolves no positions: tail reads from the oldest record and drops older ones."""

    def __init__(self, inner: MemoryBroker) -> None:
        self.inner = inner

    async def read(self, topic: str, start: Position = EARLIEST, *, limit: int = 1000) -> list[Delivery]:
        return await self.inner.read(topic, start, limit=limit)


async def test_a_reader_without_position_resolution_still_skips_nothing() -> None:
    clock = FakeClock()
    inner = MemoryBroker(partitions=PARTITIONS, clock=clock)
    await fill(inner, clock, total=3_000)
    reader = _TimeOnly(inner)
    offsets, since = await start_offsets(reader, "t", Position.at_time(clock.now() - 10.0))  # type: ignore[arg-type]
    got = [d async for page in read_all(reader, "t", offsets, since, 0) for d in page]
    assert sorted(orjson.loads(d.value)["n"] for d in got) == list(range(2_000, 3_000))


@pytest.mark.parametrize("limit", ["0", "500"])
def test_merge_time_prints_in_time_order(tmp_path: Path, limit: str) -> None:
    path = tmp_path / "merge.db"

    asyncio.run(fill_file(path, 2_000))
    args = ["tail", "t", "--merge-time", "--limit", limit, "--json", "--broker", f"sqlite:///{path}"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output[-2000:]
    docs = [orjson.loads(line) for line in result.output.splitlines()]
    assert len(docs) == (int(limit) or 2_000)
    stamps = [d["timestamp"] for d in docs]
    assert stamps == sorted(stamps)
    # the first N by time: published in calls of 100, one second apart
    assert {d["value"]["n"] // 100 for d in docs} == set(range(len(docs) // 100))


@pytest.mark.slow
def test_follow_prints_what_was_there_then_what_comes_without_skipping(tmp_path: Path) -> None:
    # Given 1,000 records, and tail --follow running until it has printed 1,600
    path = tmp_path / "follow.db"
    asyncio.run(fill_file(path, 1_000))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "choreograph", "tail", "t", "--follow", "--json", "--limit", "1600"]
    proc = subprocess.Popen([*command, "--broker", f"sqlite:///{path}"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = [proc.stdout.readline() for _ in range(1_000)]  # blocks until tail has printed the log so far
        # When 600 more are published to every partition
        asyncio.run(publish_more(path, range(1_000, 1_600)))
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Then tail printed all 1,600, each once, each partition in offset order, and stopped at its limit
    assert proc.returncode == 0
    docs = [orjson.loads(line) for line in [*first, *rest.splitlines()]]
    check_complete([(d["partition"], d["offset"], d["value"]["n"]) for d in docs], 1_600)


async def publish_more(path: Path, numbers: range) -> None:
    broker = SqliteBroker(path, SqliteConfig(partitions=PARTITIONS))
    try:
        await broker.publish("t", [Record(orjson.dumps({"n": n}), key=f"k{n % 64}") for n in numbers])
    finally:
        await broker.close()
