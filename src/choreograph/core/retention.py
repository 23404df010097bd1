"""How long a backend keeps records, how big its log is, and resolving a start position to offsets.

Every backend takes one setting, ``retention`` (seconds, or ``7d``/``12h``/
``30m``/``45s`` in a URL; ``0``, ``none`` or ``forever`` keeps records
forever), with the same default, :data:`DEFAULT_RETENTION` (7 days). Older
option names (``max_age``, ``retention_max_age``) stay accepted as aliases.
A cap on records per partition is ``retention_max_records`` wherever a backend
has one (SQLite; Redis, where ``max_length`` is its old name).
What a backend does with it differs, and :class:`Retention` says so: SQLite
never trims what a consumer group has not committed; Redis, NATS and Kafka
delete by age whatever the groups have read.

The protocols here are optional: callers check with ``isinstance`` and say
plainly when a backend lacks one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol, runtime_checkable

from choreograph.core.broker import Position
from choreograph.core.errors import ConfigurationError
from choreograph.core.options import MAX_SECONDS

DEFAULT_RETENTION: Final = 7 * 24 * 3600.0
"""Seconds every backend keeps records unless told otherwise: 7 days (Kafka's own default too)."""

_UNITS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_FOREVER: Final = {"0", "none", "null", "forever", "never"}


def parse_retention(text: str) -> float | None:
    """Parse a URL's retention: seconds (``604800``) or ``7d``/``12h``/``30m``/``45s``/``1w``.

    ``0``, ``none``, ``forever`` (and ``never``) mean keep forever and return
    None. Raises ValueError for anything else, ``inf`` and ``nan`` included (the
    URL parser names the option).
    """
    lowered = text.strip().lower()
    if lowered in _FOREVER:
        return None
    scale = _UNITS.get(lowered[-1:], None)
    number = lowered[:-1] if scale is not None else lowered
    seconds = float(number) * (scale or 1.0)
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_SECONDS:
        raise ValueError(f"not a duration from 0 to {MAX_SECONDS:g} seconds: {text!r}")
    return None if seconds == 0 else seconds


def check_retention(name: str, value: object) -> float | None:
    """Return ``value`` as seconds, or None for keep-forever (``None`` or ``0``); raise ConfigurationError otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ConfigurationError(f"{name} must be a number of seconds, 0 or None (keep forever), got {value!r}")
    if value < 0 or value > MAX_SECONDS:
        raise ConfigurationError(f"{name} must be between 0 (keep forever) and {MAX_SECONDS:g} seconds, got {value!r}")
    return None if value == 0 else float(value)


def describe_seconds(seconds: float) -> str:
    """Return ``seconds`` as a short human duration: ``7 days``, ``12 hours``, ``90 seconds``."""
    for unit, size in (("day", 86400.0), ("hour", 3600.0), ("minute", 60.0)):
        if seconds >= size and (seconds / size).is_integer():
            count = int(seconds / size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:g} seconds"


@dataclass(frozen=True, slots=True)
class Retention:
    """The retention a broker applies to its topics' records."""

    backend: str
    """Backend name, as in its URL scheme."""
    seconds: float | None
    """Records older than this are deleted; None: kept forever."""
    default: bool
    """True when no retention option was given (the documented default applies)."""
    how: str
    """One phrase on how and when it is enforced, and whether unconsumed records can go."""
    extra: tuple[str, ...] = field(default=())
    """Other limits in force (``max 1000 records per partition``)."""
    configurable: bool = True
    """The backend takes the ``retention`` option (the memory broker does not)."""

    def describe(self) -> str:
        """One line for a startup banner or log: ``log retention: 7 days (sqlite default; ...)``."""
        span = "forever (no retention)" if self.seconds is None else describe_seconds(self.seconds)
        origin = f"{self.backend} default" if self.default else f"{self.backend}, configured"
        limits = "".join(f", {limit}" for limit in self.extra)
        hint = "; set ?retention=SECONDS|7d|none" if self.configurable else ""
        return f"log retention: {span}{limits} ({origin}; {self.how}{hint})"


@runtime_checkable
class RetentionReporter(Protocol):
    """Says which retention a broker applies (for ``choreograph run``'s startup line)."""

    def describe_retention(self) -> Retention:
        """Return the retention in effect; reads only the configuration (no I/O)."""
        ...


@dataclass(frozen=True, slots=True)
class LogSize:
    """How much a broker's log holds, from counters the backend keeps (never by reading records)."""

    records: Mapping[str, int]
    """Retained records per topic."""
    bytes: Mapping[str, int] = field(default_factory=dict)
    """Bytes per topic, where the backend can tell cheaply (NATS stream state, Redis MEMORY USAGE)."""
    store_bytes: int | None = None
    """Bytes of the whole store where topics share it (the SQLite file and its WAL)."""


@runtime_checkable
class LogSizeReporter(Protocol):
    """Reports the size of the log, cheaply enough for every metrics scrape."""

    async def log_size(self) -> LogSize:
        """Return retained records per topic and bytes where known; reads no payloads."""
        ...


@runtime_checkable
class PositionResolver(Protocol):
    """Resolves a start position to the first offset to read in each partition (``choreograph tail``)."""

    async def resolve_position(self, topic: str, start: Position) -> dict[int, int]:
        """Return partition -> first offset to read for ``start`` (every partition of ``topic``)."""
        ...
