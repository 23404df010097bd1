"""A fetched batch as the consumer reads it: decoded, sorted out by type, looked up in the inbox."""

from __future__ import annotations

from dataclasses import dataclass, field

from choreograph.core.broker import Delivery
from choreograph.core.envelope import Envelope


class UnhandledType(Exception):
    """An event of a type the handler does not handle, on a topic where that is an error (reason ``type``)."""


@dataclass(slots=True)
class ReadBatch:
    """A fetched batch, decoded and looked up in the inbox, not handled yet."""

    decoded: list[tuple[Delivery, Envelope]] = field(default_factory=list)
    rejected: list[tuple[Delivery, Envelope | None, str, Exception]] = field(default_factory=list)
    """Deliveries to dead-letter without handling: (delivery, envelope if decoded, reason, error)."""
    skipped: list[Delivery] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
