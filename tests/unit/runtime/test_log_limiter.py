"""Repeated errors are logged at a bounded rate: the first at once, then one line per interval with a count."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from choreograph import App, ConsumerConfig, Context, Event
from choreograph.runtime.log_limiter import RepeatLimiter
from tests.conftest import wait_until

_LOGGER = logging.getLogger("test.log_limiter")


class Ping(Event, type="limiter.ping"):
    n: int


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_a_repeated_message_is_logged_once_per_interval_with_the_count_suppressed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    limiter = RepeatLimiter(_LOGGER, every=30.0, clock=clock)
    caplog.set_level(logging.WARNING, logger=_LOGGER.name)
    # Given the same failure 100 times within the interval
    written = [limiter.warning("subscribe failed, retrying: %s", "disk full") for _ in range(100)]
    # Then only the first is logged
    assert written.count(True) == 1
    assert _lines(caplog, "disk full") == ["subscribe failed, retrying: disk full"]
    # And another failure meanwhile is logged at once: it is news
    limiter.warning("subscribe failed, retrying: %s", "database is locked")
    assert len(_lines(caplog, "database is locked")) == 1
    # When the interval has passed, the next repeat is logged, with how many were not
    clock.now += 30.0
    limiter.warning("subscribe failed, retrying: %s", "disk full")
    assert _lines(caplog, "disk full")[-1] == (
        "subscribe failed, retrying: disk full (repeated 99 more times in the last 30s)"
    )
    # And the count starts again from there
    clock.now += 1.0
    assert not limiter.warning("subscribe failed, retrying: %s", "disk full")
    assert len(_lines(caplog, "disk full")) == 2


async def test_a_consumer_resubscribing_on_the_same_error_logs_it_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a worker on a SQLite log whose write lock another process holds: every subscribe fails "locked"
    db = tmp_path / "log.db"
    app = App("limited", broker=f"sqlite:///{db}?busy_timeout=0.01", consumer=ConsumerConfig(resubscribe_delay=0.01))

    @app.service("worker").on(Ping)
    async def handle(event: Ping, ctx: Context) -> None:
        return None

    await app.publish(Ping(n=1))
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    caplog.set_level(logging.WARNING, logger="choreograph")
    running = asyncio.create_task(app.run())
    try:
        await wait_until(lambda: bool(app._consumers) or running.done(), 10, "the consumer started")
        (consumer,) = app._consumers
        # When it has failed to subscribe many times in a row
        await wait_until(lambda: consumer._repeats.suppressed >= 20, 20, "20 failed subscribes")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    # Then the failure was logged once, not once per attempt
    lines = _lines(caplog, "subscribe failed")
    assert len(lines) == 1, lines
    assert "locked" in lines[0]
