"""Capability of a backend whose whole log is one file on this machine (the embedded SQLite log).

Some tools work on that file rather than through a broker: ``choreograph
backup`` and ``restore`` copy it (a restore must not even have it open), and
the schema registry and the workflow observer keep the tables that earlier
versions wrote beside the log there. They ask the backend's *class* for this
capability (``isinstance(broker_class(url), LocalLogBackend)``), so nothing
is opened, and nothing outside ``choreograph.brokers`` reads a URL's scheme.
Server backends (NATS, Redis, Kafka) do not have it: their own tools back
them up (docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

Progress = Callable[[int, int], None]
"""Called after each backup step with (pages copied so far, pages in all)."""


@dataclass(frozen=True, slots=True)
class BackupSummary:
    """What a backup file holds, as read from it after the copy."""

    path: str
    pages: int
    page_size: int
    records: int
    """Records in the log (every topic and partition)."""
    committed_groups: int
    """Distinct (topic, group) pairs with a committed offset."""
    inbox_keys: int
    dead_letters: int

    @property
    def size(self) -> int:
        """Bytes of the database pages (the file's size once checkpointed)."""
        return self.pages * self.page_size


@runtime_checkable
class LocalLogBackend(Protocol):
    """A broker class whose log is one local file: blocking classmethods taking the broker URL, and ``path``.

    ``isinstance`` answers the same for the class and for its instances.
    """

    @property
    def path(self) -> str:
        """On a broker instance: the file its log is in."""
        ...

    @classmethod
    def log_path(cls, url: str) -> str:
        """The file the broker at ``url`` keeps its log in (ConfigurationError if the URL names none)."""
        ...

    @classmethod
    def backup_log(
        cls, url: str, target: str, *, progress: Progress | None = None, overwrite: bool = False
    ) -> BackupSummary:
        """Copy the log as one consistent snapshot while workers run; return what the copy holds."""
        ...

    @classmethod
    def restore_log(
        cls, url: str, source: str, *, progress: Progress | None = None, force: bool = False
    ) -> BackupSummary:
        """Replace the log with the backup ``source`` (refused while workers use it); return what it holds."""
        ...
