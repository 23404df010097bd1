"""Notice when something blocks the event loop, and say what: the handler, where, and for how long.

A handler that blocks the loop (``time.sleep``, a synchronous HTTP call, a
CPU-heavy loop) stops every other handler, the heartbeats of loop-bound
work, and the probes. :class:`LoopMonitor` ticks on the loop every
``interval``; a watchdog thread that sees no tick for ``threshold`` seconds
looks at the loop thread's stack *while it is blocked* and remembers the
culprit: the outermost frame below the event loop that is neither asyncio
nor choreograph's own machinery (the handler), and the innermost one (where
it is stuck). When the loop ticks again it logs one warning naming both and
the time blocked, and counts it (:attr:`stalls`, :attr:`blocked_seconds`,
:attr:`longest`) for a metric.

Started from the loop's own thread; costs one timer callback per
``interval`` on the loop and one thread waking as often.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Final

import choreograph

log = logging.getLogger("choreograph.runtime.loop")

_ASYNCIO: Final = os.path.dirname(asyncio.__file__)
_OURS: Final = os.path.dirname(choreograph.__file__)
_USER_CODE_OF_OURS: Final = (os.path.join(_OURS, "examples"),)
"""Code inside the package that is handler code (the demo's services)."""


@dataclass(frozen=True, slots=True)
class Culprit:
    """What the loop thread was running while it was blocked."""

    handler: str
    """The outermost frame below the event loop that is not asyncio's or choreograph's: ``name (file:line)``."""
    at: str
    """The innermost frame: where it was stuck."""


class LoopMonitor:
    """Watches one event loop for stalls longer than ``threshold`` seconds. Start and stop it on the loop's thread."""

    def __init__(self, *, threshold: float = 1.0, interval: float = 0.1) -> None:
        if threshold <= 0 or interval <= 0:
            raise ValueError(f"threshold and interval must be positive, got {threshold} and {interval}")
        self.threshold = threshold
        self.interval = interval
        self.stalls = 0
        """Stalls seen so far."""
        self.blocked_seconds = 0.0
        """Seconds the loop spent blocked in them, summed."""
        self.longest = 0.0
        """The longest one, in seconds."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id = 0
        self._last = 0.0
        self._culprit: Culprit | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        """Begin watching the running loop (call from a coroutine on it)."""
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        self._last = time.monotonic()
        self._stop.clear()
        self._timer = self._loop.call_later(self.interval, self._tick)
        threading.Thread(target=self._watch, name="choreograph-loop-monitor", daemon=True).start()

    def stop(self) -> None:
        """Stop watching. Idempotent."""
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        now = time.monotonic()
        blocked = now - self._last - self.interval
        self._last = now
        culprit, self._culprit = self._culprit, None
        if blocked >= self.threshold:
            self._report(blocked, culprit)
        if not self._stop.is_set() and self._loop is not None:
            self._timer = self._loop.call_later(self.interval, self._tick)

    def _report(self, blocked: float, culprit: Culprit | None) -> None:
        self.stalls += 1
        self.blocked_seconds += blocked
        self.longest = max(self.longest, blocked)
        if culprit is None:
            log.warning("event loop blocked for %.2fs (by something that ended before it could be seen)", blocked)
        else:
            log.warning(
                "event loop blocked for %.2fs by %s, at %s: nothing else ran meanwhile "
                "(use await, or run blocking work with asyncio.to_thread)",
                blocked,
                culprit.handler,
                culprit.at,
            )

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            if self._culprit is None and time.monotonic() - self._last > self.threshold:
                self._culprit = self._blocked_in()

    def _blocked_in(self) -> Culprit | None:
        frame = sys._current_frames().get(self._thread_id)
        if frame is None:
            return None
        stack = traceback.extract_stack(frame)
        # below the innermost asyncio frame that runs a callback or a task step: what the loop is running
        start = 0
        for index, entry in enumerate(stack):
            if entry.filename.startswith(_ASYNCIO):
                start = index + 1
        running = stack[start:] or stack
        handler = next((entry for entry in running if _user_code(entry.filename)), running[0])
        inner = stack[-1]
        return Culprit(_describe(handler), _describe(inner))


def _user_code(filename: str) -> bool:
    if filename.startswith(_USER_CODE_OF_OURS):
        return True
    return not (filename.startswith(_OURS) or filename.startswith(_ASYNCIO) or filename.startswith("<"))


def _describe(entry: traceback.FrameSummary) -> str:
    return f"{entry.name} ({entry.filename}:{entry.lineno})"
