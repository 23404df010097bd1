"""The schema store contract: where a registry keeps versions and per-type modes.

A backend implements :class:`SchemaStore` (four methods). choreograph ships
:class:`~choreograph.schema.stores.MemorySchemaStore`,
:class:`~choreograph.schema.stores.SqliteSchemaStore` (a ``schemas`` table in
the embedded broker's SQLite file) and
:class:`~choreograph.schema.stores.DirectorySchemaStore` (``<type>/v<N>.json``
files for review in git). Another broker can keep schemas next to its data by
implementing the same four methods, for example on a compacted Kafka topic or a
NATS key-value bucket.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from choreograph.schema.compatibility import Compatibility


@dataclass(frozen=True, slots=True)
class SchemaRecord:
    """One registered schema version. ``fingerprint`` is :func:`~choreograph.schema.derive.fingerprint`."""

    event_type: str
    version: int
    schema: Mapping[str, Any]
    fingerprint: str
    registered_at: float | None = None


@dataclass(frozen=True, slots=True)
class Subject:
    """Everything stored for one event type: its mode (None = default) and versions, ascending."""

    event_type: str
    mode: Compatibility | None = None
    records: tuple[SchemaRecord, ...] = ()

    @property
    def latest(self) -> SchemaRecord | None:
        """Return the highest registered version, if any."""
        return self.records[-1] if self.records else None

    def record(self, version: int) -> SchemaRecord | None:
        """Return the record of ``version``, if registered."""
        return next((r for r in self.records if r.version == version), None)


@runtime_checkable
class SchemaStore(Protocol):
    """Durable storage of schema versions. Implementations are safe to share between threads."""

    def event_types(self) -> list[str]:
        """Return every event type with a version or a mode, sorted. Blocks on I/O."""
        ...

    def subject(self, event_type: str) -> Subject:
        """Return the type's mode and versions (empty if unknown). A consistent snapshot."""
        ...

    def add(self, record: SchemaRecord) -> bool:
        """Store ``record`` unless its version exists; return whether it was added.

        Atomic put-if-absent, idempotent: adding the same fingerprint again
        returns False; a different fingerprint for an existing version raises
        SchemaConflict. Never overwrites.
        """
        ...

    def set_mode(self, event_type: str, mode: Compatibility) -> None:
        """Set the type's compatibility mode. Idempotent; last writer wins."""
        ...
