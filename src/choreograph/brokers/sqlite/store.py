"""The opened broker file as the subscriptions and background tasks see it."""

from __future__ import annotations

from dataclasses import dataclass, field

from choreograph.core.broker import ParkLedger
from choreograph.core.clock import Clock

from .config import SqliteConfig
from .notifier import Notifier
from .reader import Reader
from .writer import Writer


@dataclass(frozen=True, slots=True)
class Store:
    """Everything one broker instance shares: the file, its writer and reader, wake-ups, time."""

    path: str
    config: SqliteConfig
    clock: Clock
    writer: Writer
    reader: Reader
    notifier: Notifier
    parked: ParkLedger = field(default_factory=ParkLedger)
    """Records whose dead letter could not be stored, parked (see ``dead_letters.store_or_park``)."""
