"""Retry policy: an immediate tier, then a delayed tier with exponential backoff.

Attempts are counted by the broker per (group, record) and persisted, so a
worker restart does not reset them. The policy only maps "attempt N failed"
to "try again after D seconds" or "give up".
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from choreograph.core.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how late a failed handling is tried again.

    Attempt 1 is the first delivery. After a failed attempt ``n``:

    - ``n <= immediate``: retry at once (delay 0);
    - ``n <= immediate + delayed``: retry after
      ``min(max_delay, base_delay * multiplier ** (n - immediate - 1))``, spread by
      ``±jitter`` (a fraction) so retries of many events do not arrive together;
    - otherwise the event is dead-lettered.

    So the handler runs at most ``1 + immediate + delayed`` times.
    """

    immediate: int = 2
    delayed: int = 3
    base_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 300.0
    jitter: float = 0.1
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.immediate < 0 or self.delayed < 0:
            raise ConfigurationError("RetryPolicy: immediate and delayed must be >= 0")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ConfigurationError("RetryPolicy: need 0 <= base_delay <= max_delay (seconds)")
        if self.multiplier < 1:
            raise ConfigurationError("RetryPolicy: multiplier must be >= 1")
        if not 0 <= self.jitter < 1:
            raise ConfigurationError("RetryPolicy: jitter is a fraction in [0, 1)")

    @property
    def max_attempts(self) -> int:
        """The most times a handler runs for one event."""
        return 1 + self.immediate + self.delayed

    def nominal_delay(self, failed_attempt: int) -> float | None:
        """Return the delay before the next attempt without jitter, or None to give up."""
        if failed_attempt <= self.immediate:
            return 0.0
        step = failed_attempt - self.immediate
        if step > self.delayed:
            return None
        return float(min(self.max_delay, self.base_delay * self.multiplier ** (step - 1)))

    def delay_for(self, failed_attempt: int, requested: float | None = None) -> float | None:
        """Return the jittered delay after ``failed_attempt`` failed, or None when exhausted.

        ``requested`` (from ``Retry(after=...)``) replaces the computed delay but
        not the attempt limit.
        """
        nominal = self.nominal_delay(failed_attempt)
        if nominal is None:
            return None
        if requested is not None:
            return requested
        if nominal == 0.0 or self.jitter == 0.0:
            return nominal
        return nominal * (1 + self.rng.uniform(-self.jitter, self.jitter))


NO_RETRY = RetryPolicy(immediate=0, delayed=0)
"""Dead-letter on the first failure."""
