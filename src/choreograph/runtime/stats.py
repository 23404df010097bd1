"""What a consumer counts and who hears of it: per-handler counters and settle listeners."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol, runtime_checkable

from choreograph.core.broker import Settlement
from choreograph.runtime.service import HandlerSpec


class SettleListener(Protocol):
    """Observes each settled batch of one handler (metrics, audits). Must not block."""

    def settled(self, spec: HandlerSpec, settlement: Settlement, seconds: float) -> None:
        """Called after ``settlement`` committed; ``seconds`` is the batch's handling time."""
        ...


@runtime_checkable
class SkipListener(Protocol):
    """A settle listener that also hears of events a handler skipped (not its type). Must not block."""

    def skipped(self, spec: HandlerSpec, count: int, reason: str) -> None:
        """Called after the settlement that acknowledged ``count`` skipped events committed."""
        ...


@runtime_checkable
class ThrottleListener(Protocol):
    """A settle listener that also hears how long a handler's rate limit held its reads back. Must not block."""

    def throttled(self, spec: HandlerSpec, seconds: float) -> None:
        """Called after the consumer of ``spec`` waited ``seconds`` for its RateLimit before a fetch."""
        ...


@dataclass(slots=True)
class HandlerStats:
    """Counters of one handler in this process (monotonic).

    ``skipped`` counts events of other types acknowledged without handling;
    ``crashes`` counts failures of the consumer itself (not of the handler),
    after each of which it restarted (or, with ``fail_fast``, stopped the app).
    """

    handled: int = 0
    duplicates: int = 0
    retries: int = 0
    dead_letters: int = 0
    published: int = 0
    skipped: int = 0
    crashes: int = 0

    def take(self) -> HandlerStats:
        """Return a copy of these counts and set them to zero."""
        taken = HandlerStats()
        taken.add(self)
        for counter in fields(self):
            setattr(self, counter.name, 0)
        return taken

    def add(self, other: HandlerStats) -> None:
        """Add ``other``'s counts to these."""
        self.handled += other.handled
        self.duplicates += other.duplicates
        self.retries += other.retries
        self.dead_letters += other.dead_letters
        self.published += other.published
        self.skipped += other.skipped
        self.crashes += other.crashes
