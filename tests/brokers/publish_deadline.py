"""Shared scenario: an App publishes, its broker's server stops, the next publish fails within its deadline."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import pytest

from choreograph import App, Event
from choreograph.runtime.publishing import PublishFailed, PublishPolicy

DEADLINE = 1.5
MARGIN = 0.5
"""Seconds past the deadline a failure may take (the event loop's wake-up on a shared 2-core machine)."""


class Beat(Event, type="deadline.beat", version=1):
    n: int


async def publish_after_stop(
    url: str, stop: Callable[[], None], restart: Callable[[], None] | None = None
) -> tuple[float, PublishFailed]:
    """Publish once, ``stop()`` the server, publish again: return how long the failing publish took and its error.

    ``restart`` (if given) brings the server back before the App closes, for a client that cannot close
    cleanly against a dead server within seconds (aiokafka waits out its request timeout).
    """
    app = App("deadline", broker=url, publishing=PublishPolicy(deadline=DEADLINE))
    try:
        await app.publish(Beat(n=0))  # connected, the class admitted: what remains is the broker's write
        stop()
        started = time.monotonic()
        with pytest.raises(PublishFailed) as raised:
            await app.publish(Beat(n=1))
        elapsed = time.monotonic() - started
    finally:
        if restart is not None:
            restart()
        with contextlib.suppress(Exception):  # closing against a dead server may fail: not what is tested
            async with asyncio.timeout(5):
                await app.close()
    print(f"\n{url.split(':', 1)[0]}: the publish after the stop failed in {elapsed:.2f} s: {raised.value}")  # for -s
    assert elapsed < DEADLINE + MARGIN, f"the failing publish took {elapsed:.2f} s"
    assert "deadline.beat" in str(raised.value)
    return elapsed, raised.value
