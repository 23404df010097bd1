"""Time sources. Inject a clock to make retry delays and deadlines testable."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """A source of wall-clock time in float seconds since the epoch."""

    def now(self) -> float:
        """Return the current time. Never blocks."""
        ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> float:
        """Return ``time.time()``."""
        return time.time()


class FakeClock:
    """A clock that moves only when told to. For tests of delays and deadlines."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._changed = asyncio.Event()

    def now(self) -> float:
        """Return the fake current time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (>= 0)."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds
