"""A worker whose storage is gone stops (non-zero) instead of spinning; a handler blocking the loop is reported."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from choreograph import App, ConsumerConfig, Context, Event
from choreograph.brokers.memory import MemoryBroker
from choreograph.core.errors import StorageLost
from choreograph.observe.metrics import CONSUMER_CRASHES, LOOP_BLOCKED, LOOP_STALLS, install_metrics
from tests.conftest import wait_until

FAST = ConsumerConfig(fetch_timeout=0.02, restart_delay=0.01, max_restart_delay=0.04)


class Job(Event, type="storage.job"):
    n: int


async def test_run_stops_with_storage_lost_when_the_database_file_is_deleted(tmp_path: Path) -> None:
    # Given a worker on a SQLite log whose handler is in the middle of an event
    db = tmp_path / "log.db"
    app = App("storage", broker=f"sqlite:///{db}", consumer=FAST)
    started, release = asyncio.Event(), asyncio.Event()

    @app.service("worker").on(Job)
    async def work(event: Job, ctx: Context) -> None:
        started.set()
        await release.wait()

    await app.publish(Job(n=1))
    running = asyncio.create_task(app.run())
    await asyncio.wait_for(started.wait(), 10)
    # When the database file is deleted under it and the handler finishes (its settle must write)
    db.unlink()
    release.set()
    # Then run() ends with StorageLost naming the file, rather than restarting the consumer forever
    with pytest.raises(StorageLost, match=str(db.name)):
        await asyncio.wait_for(running, 20)
    assert app.stats()["worker.work"].crashes == 1


async def test_a_handler_blocking_the_loop_is_counted_and_exported() -> None:
    # Given a running app with metrics, whose handler blocks the event loop for 1.3 s
    app = App("blocking", broker=MemoryBroker(), consumer=FAST)
    metrics = install_metrics(app)
    done = asyncio.Event()

    @app.service("worker").on(Job)
    async def block(event: Job, ctx: Context) -> None:
        time.sleep(1.3)  # the fault under test: a synchronous call inside an async handler
        done.set()

    running = asyncio.create_task(app.run())
    try:
        await app.publish(Job(n=1))
        await asyncio.wait_for(done.wait(), 10)
        monitor = app.loop_monitor
        assert monitor is not None
        # When the loop ticks again, the stall is reported
        await wait_until(lambda: monitor.stalls >= 1, 5, "the loop monitor to report the stall")
        await metrics.refresh()
        scrape = metrics.render().decode()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await app.close()
    # Then it counts one stall of at least the time blocked, and the metrics export it
    assert monitor.stalls == 1
    assert monitor.longest >= 1.2
    assert f"{LOOP_STALLS} 1.0" in scrape
    blocked = next(line for line in scrape.splitlines() if line.startswith(f"{LOOP_BLOCKED} "))
    assert float(blocked.split()[1]) >= 1.2
    assert f'{CONSUMER_CRASHES}{{group="worker.block"}} 0.0' in scrape
