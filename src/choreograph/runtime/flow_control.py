"""Flow control of one handler's consumer: a token bucket that paces how fast it reads.

The consumer asks its :class:`RateGate` how many records it may fetch before
each fetch: the gate waits until at least one token is there, takes up to
the batch size, and gets back what the fetch did not use. Records beyond the
rate therefore stay in the log — not in memory, holding no lease or ack
deadline while they wait. The bucket is per handler and per process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from choreograph.runtime.options import RateLimit
from choreograph.runtime.service import HandlerSpec
from choreograph.runtime.stats import ThrottleListener


class TokenBucket:
    """``rate`` tokens a second, at most ``capacity`` saved up. Starts full. Not thread-safe (one event loop).

    ``now`` is a monotonic time source in seconds (default ``time.monotonic``).
    Over any span of t seconds, at most ``capacity + rate * t`` tokens are taken.
    """

    __slots__ = ("_at", "_capacity", "_now", "_rate", "_tokens")

    def __init__(self, rate: float, capacity: int, *, now: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._capacity = float(capacity)
        self._now = now
        self._tokens = float(capacity)
        self._at = now()

    def _refill(self) -> None:
        at = self._now()
        self._tokens = min(self._capacity, self._tokens + (at - self._at) * self._rate)
        self._at = at

    def wait_time(self) -> float:
        """Return the seconds until one whole token is there (0 if it is now)."""
        self._refill()
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self._rate

    def take(self, wanted: int) -> int:
        """Take up to ``wanted`` whole tokens that are there now; return how many were taken (maybe 0)."""
        self._refill()
        taken = max(0, min(wanted, int(self._tokens)))
        self._tokens -= taken
        return taken

    def give_back(self, unused: int) -> None:
        """Return ``unused`` tokens taken but not spent (never above the capacity)."""
        self._tokens = min(self._capacity, self._tokens + unused)


class RateGate:
    """Paces one consumer's fetches per its :class:`~choreograph.runtime.options.RateLimit`.

    ``waited`` is the total seconds this gate has made the consumer wait;
    each wait is also passed to ``report`` (metrics).
    """

    def __init__(
        self,
        limit: RateLimit,
        *,
        report: Callable[[float], None] | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self._bucket = TokenBucket(limit.per_second, limit.capacity, now=now)
        self._report = report
        self._now = now
        self.waited = 0.0

    async def acquire(self, wanted: int, stopping: asyncio.Event) -> int:
        """Wait until a record may be read; take and return up to ``wanted`` tokens (0 once ``stopping`` is set).

        At most the bucket's capacity is taken at once: that bounds the batch
        a rate-limited handler reads. Give back what the fetch did not use
        with :meth:`give_back`.
        """
        bucket = self._bucket
        started: float | None = None
        while (wait := bucket.wait_time()) > 0:
            if started is None:
                started = self._now()
            try:
                await asyncio.wait_for(stopping.wait(), wait)
            except TimeoutError:
                continue
            break  # stopping: take nothing
        if started is not None:
            waited = self._now() - started
            self.waited += waited
            if self._report is not None:
                self._report(waited)
        return 0 if stopping.is_set() else bucket.take(wanted)

    def give_back(self, unused: int) -> None:
        """Return tokens for records the fetch asked for and did not get."""
        if unused > 0:
            self._bucket.give_back(unused)


def rate_gate(spec: HandlerSpec, listeners: Sequence[object]) -> RateGate | None:
    """Return the gate for ``spec``'s RateLimit (None without one), reporting waits to the ThrottleListeners."""
    limit = spec.option(RateLimit)
    if limit is None:
        return None
    throttle_listeners = [listener for listener in listeners if isinstance(listener, ThrottleListener)]
    if not throttle_listeners:
        return RateGate(limit)

    def report(seconds: float) -> None:
        for listener in throttle_listeners:
            listener.throttled(spec, seconds)

    return RateGate(limit, report=report)
