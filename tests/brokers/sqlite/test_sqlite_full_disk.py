"""A full disk under the SQLite broker, simulated with SQLite's own limit on the writer's file size.

``PRAGMA max_page_count`` on the one connection that writes makes every write
that would grow the file fail with SQLITE_FULL, exactly as a full disk does
(the same error, the same code path), without filling the machine's disk.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from choreograph import App, ConsumerConfig, Context, Event
from choreograph.brokers.sqlite import SqliteBroker, SqliteConfig
from choreograph.brokers.sqlite.writer import WriteBatch
from choreograph.core.broker import Record
from choreograph.core.errors import BrokerUnavailable

from .conftest import OpenBroker

FAST = ConsumerConfig(fetch_timeout=0.05, resubscribe_delay=0.2)


async def _limit_pages(broker: SqliteBroker, extra: int | None) -> None:
    """Let the file grow by ``extra`` pages at most (``None``: no limit), as a disk with that much room would."""

    def limit(batch: WriteBatch) -> None:
        pages = batch.conn.execute("PRAGMA page_count").fetchone()[0]
        ceiling = 1_073_741_823 if extra is None else pages + extra
        batch.conn.execute(f"PRAGMA max_page_count = {ceiling}").fetchall()

    await broker._store.writer.run(limit)


async def test_a_publish_on_a_full_disk_fails_naming_the_cause_and_loses_nothing_acknowledged(
    open_broker: OpenBroker,
) -> None:
    # Given a broker that acknowledged 50 records
    broker = open_broker(SqliteConfig(partitions=2))
    kept = [Record(f"kept-{i}".encode(), key=f"k{i % 4}") for i in range(50)]
    await broker.publish("t", kept)

    # When the disk is full
    await _limit_pages(broker, 0)

    # Then a publish that needs room fails, saying the disk is full, and every later one until there is room
    for _ in range(2):
        with pytest.raises(BrokerUnavailable, match="disk is full"):
            await broker.publish("t", [Record(b"x" * 200_000, key="k0")])
    # And what was acknowledged is intact
    assert sorted(d.value for d in await broker.read("t", limit=100)) == sorted(r.value for r in kept)

    # When space returns, then publishes go through again
    await _limit_pages(broker, None)
    await broker.publish("t", [Record(b"after", key="k0")])
    assert len(await broker.read("t", limit=100)) == 51


class Job(Event, type="full_disk.job"):
    n: int


class Done(Event, type="full_disk.done"):
    n: int


async def _outputs(broker: SqliteBroker) -> int:
    """How many outputs the worker committed."""
    return sum(t.records for t in await broker.topics() if t.name == Done.topic())


async def test_a_worker_on_a_full_disk_keeps_every_event_and_recovers_when_space_returns(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a worker whose handler writes an output per event, on a file whose disk then fills up
    broker = SqliteBroker(db_path, SqliteConfig(partitions=2, lease_timeout=2.0, busy_timeout=0.2))
    app = App("full-disk", broker=broker, consumer=FAST)
    handled: list[int] = []

    @app.service("worker").on(Job)
    async def work(event: Job, ctx: Context) -> None:
        handled.append(event.n)
        ctx.publish(Done(n=event.n), key=str(event.n % 4))  # the settle must write: it needs room

    for n in range(20):
        await app.publish(Job(n=n), key=str(n % 4))
    await _limit_pages(broker, 0)
    running = asyncio.create_task(app.run())
    try:
        # When it runs for 3 s with no room: every settle fails
        with caplog.at_level(logging.WARNING):
            await asyncio.sleep(3.0)  # the fault's duration, not a synchronization
        full = [r for r in caplog.records if "disk is full" in r.getMessage() or "disk is full" in str(r.exc_info)]
        assert full, "the failures do not say the disk is full"
        # Then it logs at a bounded rate (one line per resubscribe_delay: 15 in 3 s here), and stays alive
        assert len(caplog.records) <= 3.0 / FAST.resubscribe_delay + 3, f"{len(caplog.records)} log lines in 3 s"
        assert not running.done()
        assert await _outputs(broker) == 0, "an output was committed on a full disk"

        # When space returns, then every event is handled and its output committed, nothing lost
        await _limit_pages(broker, None)
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            done = await _outputs(broker)
            if done >= 20:
                break
            assert asyncio.get_running_loop().time() < deadline, f"only {done} outputs after space returned"
            await asyncio.sleep(0.05)  # the worker runs in this loop: look again shortly
        assert set(handled) == set(range(20))
    finally:
        await app.stop()
        await running
        await broker.close()
