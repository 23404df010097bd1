"""The loop monitor names a handler that blocks the event loop, with the time it blocked."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from choreograph.runtime.loop_monitor import LoopMonitor
from tests.conftest import wait_until


def slow_lookup() -> None:
    time.sleep(0.6)  # a synchronous call in a handler: the fault under test


async def on_order_placed() -> None:
    slow_lookup()


async def test_a_handler_blocking_the_loop_is_named_with_the_time_it_blocked(caplog: pytest.LogCaptureFixture) -> None:
    # Given a monitor on the running loop
    monitor = LoopMonitor(threshold=0.2, interval=0.02)
    monitor.start()
    try:
        with caplog.at_level(logging.WARNING, logger="choreograph.runtime.loop"):
            # When a handler blocks the loop for 0.6 s
            await asyncio.create_task(on_order_placed())
            # Then, once the loop runs again, one warning names the handler, where it was stuck, and for how long
            await wait_until(lambda: monitor.stalls > 0, timeout=5, what="the stall to be reported")
    finally:
        monitor.stop()
    assert monitor.stalls == 1
    assert 0.5 <= monitor.longest < 1.0
    assert monitor.blocked_seconds == monitor.longest
    [record] = [r for r in caplog.records if r.name == "choreograph.runtime.loop"]
    message = record.getMessage()
    assert "blocked for 0.5" in message or "blocked for 0.6" in message
    assert "by on_order_placed (" in message and "test_loop_monitor.py" in message
    assert "at slow_lookup (" in message


async def test_a_loop_that_keeps_turning_reports_nothing() -> None:
    monitor = LoopMonitor(threshold=0.2, interval=0.02)
    monitor.start()
    try:
        for _ in range(30):
            await asyncio.sleep(0.01)
    finally:
        monitor.stop()
    assert monitor.stalls == 0


def test_thresholds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        LoopMonitor(threshold=0)
