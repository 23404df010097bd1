"""The schema registry: versions of every event type, their compatibility mode, and the checks.

The registry keeps no state of its own: every call reads the store, so several
processes (or a CI job and a running app) can share one store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from choreograph.core.clock import Clock, SystemClock
from choreograph.core.event import Event
from choreograph.schema.comparison import ROOT, Finding, compare
from choreograph.schema.compatibility import (
    DEFAULT_MODE,
    Change,
    Compatibility,
    CompatibilityReport,
    check_compatibility,
    diff_schemas,
)
from choreograph.schema.derive import derive_schema, fingerprint, schema_identity
from choreograph.schema.errors import IncompatibleSchema, SchemaStoreError, UnknownSchema
from choreograph.schema.rules import Rule
from choreograph.schema.store import CheckedSchemaStore, SchemaRecord, SchemaStore, Subject
from choreograph.schema.stores import MemorySchemaStore

SchemaSource = type[Event] | Mapping[str, Any]
"""An Event class, or a schema dict carrying ``x-choreograph-type`` and ``x-choreograph-version``."""


def _schema_of(source: SchemaSource) -> dict[str, Any]:
    if isinstance(source, type):
        return derive_schema(source)
    return dict(source)


class SchemaRegistry:
    """Registers event schemas and checks new versions against a type's compatibility mode.

    Every method blocks on the store. Safe to use from several threads and
    processes as far as the store is: two registrations of the same version
    with different schemas cannot both succeed.
    """

    def __init__(
        self,
        store: SchemaStore | None = None,
        *,
        default_mode: Compatibility = DEFAULT_MODE,
        clock: Clock | None = None,
    ) -> None:
        self.store: SchemaStore = store if store is not None else MemorySchemaStore()
        self.default_mode = default_mode
        self._clock = clock or SystemClock()

    # -- reading -----------------------------------------------------------------------------

    def event_types(self) -> list[str]:
        """Return every registered event type, sorted."""
        return self.store.event_types()

    def versions(self, event_type: str) -> list[int]:
        """Return the registered versions of ``event_type``, ascending (empty if unknown)."""
        return [r.version for r in self.store.subject(event_type).records]

    def get(self, event_type: str, version: int | None = None) -> SchemaRecord:
        """Return one version (the latest if ``version`` is None); raise UnknownSchema if absent."""
        subject = self.store.subject(event_type)
        record = subject.latest if version is None else subject.record(version)
        if record is None:
            known = ", ".join(f"v{r.version}" for r in subject.records) or "none"
            wanted = "any version" if version is None else f"v{version}"
            raise UnknownSchema(f"no schema registered for {event_type} {wanted} (registered: {known})")
        return record

    def mode(self, event_type: str) -> Compatibility:
        """Return the type's compatibility mode (the registry default unless set)."""
        return self.store.subject(event_type).mode or self.default_mode

    def set_mode(self, event_type: str, mode: Compatibility | str) -> None:
        """Set the compatibility mode of ``event_type``; applies to versions registered from now on."""
        self.store.set_mode(event_type, mode if isinstance(mode, Compatibility) else Compatibility.parse(mode))

    # -- checking ----------------------------------------------------------------------------

    def check(self, source: SchemaSource) -> CompatibilityReport:
        """Check a version against the registry without writing anything.

        Already registered with the same fingerprint: compatible, status
        ``registered``. Registered with another schema: finding
        ``version-changed-in-place``. Lower than the latest and unregistered:
        ``version-out-of-order``. Otherwise the type's mode decides.
        """
        schema = _schema_of(source)
        event_type, _ = schema_identity(schema)
        return self._report(schema, self.store.subject(event_type))

    def _report(self, schema: Mapping[str, Any], subject: Subject) -> CompatibilityReport:
        """The :meth:`check` of ``schema`` against one snapshot of its type's history."""
        event_type, version = schema_identity(schema)
        mode = subject.mode or self.default_mode
        existing = subject.record(version)
        if existing is not None:
            if existing.fingerprint == fingerprint(schema):
                return CompatibilityReport(event_type, version, mode, status="registered")
            return CompatibilityReport(
                event_type,
                version,
                mode,
                _changed_in_place(existing, schema),
                compared_with=(version,),
                status="changed-in-place",
            )
        latest = subject.latest
        if latest is not None and version < latest.version:
            finding = Finding(
                ROOT,
                Rule.VERSION_OUT_OF_ORDER,
                "backward",
                f"latest registered v{latest.version}",
                f"v{version} (unregistered)",
                f"versions only move forward: v{version} is lower than the registered v{latest.version}; "
                f"give the event version {latest.version + 1} or higher",
                old_version=latest.version,
                new_version=version,
            )
            return CompatibilityReport(
                event_type, version, mode, (finding,), compared_with=(latest.version,), status="out-of-order"
            )
        earlier = [(r.version, r.schema) for r in subject.records]
        return check_compatibility(schema, earlier, mode, event_type=event_type, version=version)

    def register(self, source: SchemaSource) -> SchemaRecord:
        """Register a version if it is compatible; return its record (the existing one if unchanged).

        Idempotent for an unchanged version. Raises IncompatibleSchema (with the
        report) when the type's mode forbids it, SchemaConflict if another
        process registered a different schema under this version meanwhile.
        With a :class:`~choreograph.schema.store.CheckedSchemaStore` the check
        and the add are one atomic step, so concurrent registrations of one
        type end with one history that every version was checked against.
        """
        schema = _schema_of(source)
        event_type, version = schema_identity(schema)
        record = SchemaRecord(event_type, version, schema, fingerprint(schema), self._clock.now())
        if isinstance(self.store, CheckedSchemaStore):
            # The check runs inside the store's atomic step, on the history the add is made to.
            def admit(subject: Subject) -> None:
                report = self._report(schema, subject)
                if not report.compatible:
                    raise IncompatibleSchema(report)

            stored = self.store.add_checked(record, admit).record(version)
            if stored is None:  # a store that does not keep what it added: a bug, not a conflict
                raise SchemaStoreError(f"{event_type} v{version} was added but is not in the store")
            return stored
        report = self.check(schema)
        if not report.compatible:
            raise IncompatibleSchema(report)
        if report.status == "registered":
            return self.get(event_type, version)
        if not self.store.add(record):
            return self.get(event_type, version)
        return record

    def diff(self, event_type: str, old_version: int, new_version: int) -> list[Change]:
        """Return the changes between two registered versions, and whom each breaks."""
        return diff_schemas(self.get(event_type, old_version).schema, self.get(event_type, new_version).schema)


def _changed_in_place(existing: SchemaRecord, schema: Mapping[str, Any]) -> tuple[Finding, ...]:
    version = existing.version
    head = Finding(
        ROOT,
        Rule.VERSION_CHANGED_IN_PLACE,
        "backward",
        f"registered v{version} ({existing.fingerprint[:19]})",
        f"code v{version} ({fingerprint(schema)[:19]})",
        f"v{version} is registered with a different schema; registered versions are immutable. "
        f"Bump the event's version to {version + 1} (and register an upcaster) instead of editing it",
        old_version=version,
        new_version=version,
    )
    details = [
        f.with_versions(version, version)
        for direction in ("backward", "forward")
        for f in compare(existing.schema, schema, direction)
    ]
    return (head, *details)
