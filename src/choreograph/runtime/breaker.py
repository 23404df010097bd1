"""Circuit breaker: stop calling a handler whose downstream is failing.

After ``failures`` consecutive failed attempts (errors that go to retry or to
the dead letter after retries — not bad data: decode, schema and ``Reject``
failures say nothing about the downstream), the breaker opens and the
handler's consumer stops fetching for ``open_interval`` seconds, so events wait
in the log instead of burning their retry attempts. Then it half-opens: one
event is tried; a success closes the breaker, a failure opens it again.

Events already in hand when the breaker opens are settled as usual.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from choreograph.core.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class CircuitBreaker:
    """When to open (``failures`` in a row) and how long to stay open (seconds)."""

    failures: int = 5
    open_interval: float = 30.0

    def __post_init__(self) -> None:
        if self.failures < 1:
            raise ConfigurationError(f"CircuitBreaker(failures={self.failures}) must be >= 1")
        if self.open_interval <= 0:
            raise ConfigurationError(f"CircuitBreaker(open_interval={self.open_interval}) must be > 0 seconds")


@dataclass(slots=True)
class BreakerState:
    """The live state of one handler's breaker in this process. Not shared across processes."""

    policy: CircuitBreaker
    consecutive: int = 0
    open_until: float | None = None
    half_open: bool = False
    opened: int = field(default=0)
    """How many times it opened (for metrics and tests)."""

    @property
    def is_open(self) -> bool:
        """True while consumption is paused."""
        return self.open_until is not None and time.monotonic() < self.open_until

    def wait_time(self) -> float:
        """Seconds to wait before fetching again (0 when closed or half-open)."""
        if self.open_until is None:
            return 0.0
        remaining = self.open_until - time.monotonic()
        if remaining > 0:
            return remaining
        self.open_until = None
        self.half_open = True
        return 0.0

    def record(self, failed: bool) -> None:
        """Count one attempt's result; open the breaker when the threshold is reached."""
        if not failed:
            self.consecutive = 0
            self.half_open = False
            return
        self.consecutive += 1
        if self.half_open or self.consecutive >= self.policy.failures:
            self.open_until = time.monotonic() + self.policy.open_interval
            self.half_open = False
            self.consecutive = 0
            self.opened += 1
