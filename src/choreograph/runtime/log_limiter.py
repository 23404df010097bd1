"""Repeated errors logged at a bounded rate: the first at once, then one line per interval with a count.

A consumer that resubscribes in a loop on the same error (a full disk, a
lock held elsewhere, a server refusing writes) would otherwise log a line
every ``resubscribe_delay``: thousands an hour, drowning everything else.
:class:`RepeatLimiter` logs the first occurrence of a message, then at most
one line per ``every`` seconds for it, saying how many were suppressed
meanwhile. A different message (another error) is its own first occurrence
and is logged at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final

DEFAULT_EVERY: Final = 30.0
"""Seconds between two lines of one repeated message."""
_REMEMBERED: Final = 64
"""Distinct messages remembered at once; the oldest is forgotten first (then logged again as new)."""


class RepeatLimiter:
    """Log through ``log``, at most one line per ``every`` seconds per distinct message.

    Not thread-safe: one consumer loop's own limiter.
    """

    def __init__(
        self,
        log: logging.Logger | logging.LoggerAdapter[Any],
        *,
        every: float = DEFAULT_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self.every = every
        self._clock = clock
        self._seen: dict[str, tuple[float, int, float]] = {}
        """message -> (time it may be logged again, repeats suppressed since, time of the last line)."""
        self.suppressed = 0
        """Lines not written since this limiter was made, all messages together."""

    def log(self, level: int, msg: str, *args: object) -> bool:
        """Log ``msg % args`` at ``level`` unless the same text was logged less than ``every`` seconds ago.

        Returns whether a line was written. A line after suppressed repeats
        ends with how many there were and over how long.
        """
        text = msg % args if args else msg
        now = self._clock()
        entry = self._seen.get(text)
        if entry is not None and now < entry[0]:
            self._seen[text] = (entry[0], entry[1] + 1, entry[2])
            self.suppressed += 1
            return False
        if entry is not None and entry[1]:
            self._log.log(level, "%s (repeated %d more times in the last %.0fs)", text, entry[1], now - entry[2])
        else:
            self._log.log(level, "%s", text)
        self._seen.pop(text, None)
        self._seen[text] = (now + self.every, 0, now)
        if len(self._seen) > _REMEMBERED:
            del self._seen[next(iter(self._seen))]
        return True

    def warning(self, msg: str, *args: object) -> bool:
        """:meth:`log` at WARNING."""
        return self.log(logging.WARNING, msg, *args)
