"""Several OS processes on one SQLite file: kill -9 of a member, durability of acknowledged publishes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from choreograph.brokers.sqlite import SqliteConfig
from choreograph.core.broker import Delivery, Record, Settlement
from tests.conftest import wait_until

from .conftest import OpenBroker

pytestmark = pytest.mark.slow

FAST = SqliteConfig(partitions=4, lease_timeout=1.0, heartbeat_interval=0.2, rebalance_check_interval=0.02)

# Child: join the group, settle a first batch, fetch a second and hang on to it, then wait to be killed.
MEMBER_SCRIPT = """
import asyncio, json, sys
from choreograph.brokers.sqlite import SqliteBroker, SqliteConfig
from choreograph.core.broker import Settlement

async def main(path):
    config = SqliteConfig(partitions=4, lease_timeout=1.0, heartbeat_interval=0.2, rebalance_check_interval=0.02)
    broker = SqliteBroker(path, config)
    sub = await broker.subscribe("t", "g")
    settled = await sub.fetch(40, 5.0)
    await sub.settle(Settlement(acks=list(settled)))
    held = await sub.fetch(40, 5.0)
    print(json.dumps({"settled": [d.value.decode() for d in settled], "held": len(held)}), flush=True)
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1]))
"""

# Child: publish batches, reporting each one only after publish returned; killed at some point.
PUBLISHER_SCRIPT = """
import asyncio, sys
from choreograph.brokers.sqlite import SqliteBroker
from choreograph.core.broker import Record

async def main(path):
    broker = SqliteBroker(path)
    batch = 0
    while True:
        await broker.publish("t", [Record(f"{batch}:{i}".encode(), key=f"k{i}") for i in range(50)])
        print(batch, flush=True)
        batch += 1

asyncio.run(main(sys.argv[1]))
"""


def spawn(script: str, db_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, str(db_path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def read_line(process: subprocess.Popen[str], timeout: float = 20.0) -> str:
    assert process.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), timeout)
    assert line, f"child exited early with {process.poll()}"
    return line


def kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    if process.stdout is not None:
        process.stdout.close()


async def test_killed_member_partitions_move_and_nothing_is_lost(open_broker: OpenBroker, db_path: Path) -> None:
    # Given 200 records and a member in another process holding every partition
    broker = open_broker(FAST)
    await broker.publish("t", [Record(f"{i}".encode(), key=f"k{i}") for i in range(200)])
    child = spawn(MEMBER_SCRIPT, db_path)
    try:
        report = json.loads(await read_line(child))
        assert report["held"] > 0
        survivor = await broker.subscribe("t", "g")
        assert survivor.held() == set()
    finally:
        # When that process is killed with unsettled deliveries in hand
        kill(child)
    # Then its leases expire and the survivor takes every partition
    await wait_until(lambda: survivor.held() == {0, 1, 2, 3}, timeout=10.0, what="takeover after kill -9")
    got: list[Delivery] = []
    deadline = time.monotonic() + 10
    while len(got) < 200 - len(report["settled"]):
        assert time.monotonic() < deadline, f"only {len(got)} redelivered"
        batch = await survivor.fetch(100, 0.5)
        got.extend(batch)
        await survivor.settle(Settlement(acks=list(batch)))
    # And everything the dead member had not settled arrives, exactly once here
    received = [d.value.decode() for d in got]
    assert len(received) == len(set(received))
    assert set(received) | set(report["settled"]) == {str(i) for i in range(200)}
    assert set(received).isdisjoint(report["settled"])
    assert sum(lag.lag for lag in await broker.lag("g")) == 0


async def test_acknowledged_publishes_survive_kill_of_the_publisher(open_broker: OpenBroker, db_path: Path) -> None:
    # Given a process publishing batches and reporting each acknowledged one
    child = spawn(PUBLISHER_SCRIPT, db_path)
    try:
        acknowledged = [int(await read_line(child)) for _ in range(5)]
    finally:
        # When it is killed mid-stream
        kill(child)
    # Then every acknowledged batch is in the log, complete
    broker = open_broker()
    rows = await broker.read("t", limit=1_000_000)
    batches: dict[int, int] = {}
    for row in rows:
        batch = int(row.value.split(b":")[0])
        batches[batch] = batches.get(batch, 0) + 1
    for batch in acknowledged:
        assert batches[batch] == 50
    assert all(count == 50 for count in batches.values())  # a batch commits whole or not at all
