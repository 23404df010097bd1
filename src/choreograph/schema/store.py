"""The schema store contract: where a registry keeps versions and per-type modes.

A backend implements :class:`SchemaStore` (four methods). choreograph ships
:class:`~choreograph.schema.stores.MemorySchemaStore`,
:class:`~choreograph.schema.stores.SqliteSchemaStore` (a ``schemas`` table in
the embedded broker's SQLite file),
:class:`~choreograph.schema.stores.DirectorySchemaStore` (``<type>/v<N>.json``
files for review in git) and
:class:`~choreograph.schema.kv_store.KeyValueSchemaStore` (one document per
type in any broker's key-value store: a NATS KV bucket, Redis, a Kafka
compacted topic).

A store that can check and add in one atomic step also implements
:class:`CheckedSchemaStore`; the registry then runs its compatibility check
inside that step, so two processes registering different versions of one type
at the same moment cannot both pass a check against a history the other is
changing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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


SubjectCheck = Callable[[Subject], None]
"""Called with the type's current subject inside an atomic add; raises to refuse the add."""


@runtime_checkable
class CheckedSchemaStore(SchemaStore, Protocol):
    """A :class:`SchemaStore` that adds a version only if a check of the current history passes, atomically."""

    def add_checked(self, record: SchemaRecord, check: SubjectCheck) -> Subject:
        """Add ``record`` if ``check(subject)`` passes on the type's current subject; return the subject after.

        ``check`` may run more than once (each time on a newer subject) when
        another writer changed the type meanwhile; whatever it raises is
        raised here and nothing is written. After it passes, the version is
        added as :meth:`SchemaStore.add` would (an identical existing version
        is kept, a different one raises SchemaConflict), in the same atomic
        step as the read the check saw.
        """
        ...
