"""Keep a long-running task alive: restart it with backoff when it crashes.

A consumer (or an observer) must not take the rest of the process down with a
bug of its own: :func:`supervise` logs the crash with its traceback, counts
it, waits and runs the task again, until asked to stop. ``fail_fast`` turns
that off for those who prefer a crash to stop everything (``choreograph run
--fail-fast``, tests, CI).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from choreograph.core.errors import ConfigurationError

logger = logging.getLogger("choreograph.supervisor")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential restart delays: ``initial`` seconds, doubled per crash in a row, at most ``maximum``."""

    initial: float = 0.5
    maximum: float = 30.0

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum):  # also refuses nan
            raise ConfigurationError(
                f"restart delays must satisfy 0 < initial <= maximum, got {self.initial} and {self.maximum}"
            )

    def delay(self, crashes: int) -> float:
        """The delay before the restart that follows ``crashes`` crashes in a row (>= 1)."""
        return min(self.maximum, self.initial * 2.0 ** min(max(crashes - 1, 0), 64))


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    stopping: asyncio.Event,
    backoff: Backoff = Backoff(),  # frozen: one default shared safely
    fail_fast: bool = False,
    on_crash: Callable[[BaseException], None] | None = None,
    log: logging.Logger | logging.LoggerAdapter[Any] = logger,
    fatal: tuple[type[BaseException], ...] = (),
) -> None:
    """Await ``run()`` until it returns or ``stopping`` is set, restarting it after each crash.

    A crash is any Exception out of ``run()``; cancellation passes through.
    Each crash calls ``on_crash`` and is logged with its traceback; the next
    run starts after ``backoff.delay(n)`` seconds (``n`` crashes in a row; a
    run that lasted at least ``backoff.maximum`` resets the count), or not at
    all if ``stopping`` is set meanwhile. With ``fail_fast`` the first crash
    is raised instead, after ``on_crash``. An exception of a ``fatal`` type
    is never restarted: restarting cannot mend it (the storage is gone), so it
    is logged and raised for a supervisor outside the process to act on.
    """
    loop = asyncio.get_running_loop()
    in_a_row = 0
    while not stopping.is_set():
        started = loop.time()
        try:
            await run()
            return
        except Exception as exc:
            if on_crash is not None:
                on_crash(exc)
            if isinstance(exc, fatal):
                log.critical("%s stopped: %s", name, exc)
                raise
            if fail_fast:
                log.error("%s crashed; stopping (fail-fast)", name, exc_info=exc)
                raise
            in_a_row = 1 if loop.time() - started >= backoff.maximum else in_a_row + 1
            delay = backoff.delay(in_a_row)
            log.error("%s crashed (%d in a row); restarting in %.1fs", name, in_a_row, delay, exc_info=exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), delay)
