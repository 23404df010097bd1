"""Settings of the in-memory broker and the ``memory://`` URL form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from choreograph.brokers.memory._state import DEFAULT_PARTITIONS
from choreograph.core.errors import ConfigurationError
from choreograph.core.options import MAX_PARTITIONS, require_positive, require_positive_int, split_url
from choreograph.core.redaction import redact_url
from choreograph.core.url_options import parse_options, url_options


@dataclass(frozen=True, slots=True)
class MemoryConfig:
    """How the memory broker partitions topics and keeps dead letters. Validated on construction."""

    partitions: int = DEFAULT_PARTITIONS
    """Partitions of every topic."""
    dead_letter_retention: float | None = None
    """Seconds a dead letter is kept after it was stored, whatever its status; then it is deleted."""

    def __post_init__(self) -> None:
        require_positive_int("partitions", self.partitions, at_most=MAX_PARTITIONS)
        if self.dead_letter_retention is not None:
            require_positive("dead_letter_retention", self.dead_letter_retention)


_OPTIONS: Final = url_options(MemoryConfig, "memory")
"""The URL options: every field, read by its type (see :mod:`choreograph.core.url_options`)."""


def parse_url(url: str) -> MemoryConfig:
    """Build a config from ``memory://`` or ``memory://?partitions=N&dead_letter_retention=SECONDS``."""
    parts = split_url(url, "memory")
    if parts.scheme != "memory" or parts.netloc or parts.path not in ("", "/"):
        raise ConfigurationError(
            f"not a memory broker URL: {redact_url(url)!r}; write memory:// or memory://?partitions=4"
        )
    return MemoryConfig(**parse_options(_OPTIONS, parts.query))
