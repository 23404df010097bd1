"""Errors raised by the schema layer.

All derive from :class:`SchemaError`, itself a :class:`ChoreographError`; a
stdlib type is mixed in where one fits::

    ChoreographError
    └── SchemaError
        ├── SchemaViolation (ValueError)        a payload does not match its event model
        ├── IncompatibleSchema (ValueError)     a new version breaks the type's compatibility mode
        ├── SchemaConflict (ValueError)         a version is already registered with another schema
        ├── UnknownSchema (NotFound)            no such event type or version in the registry
        ├── UpcastError (LookupError)           no upcaster chain reaches the wanted version
        └── SchemaStoreError                    the store (SQLite file, directory) failed

The runtime dead-letters an incoming event with reason ``schema`` when
validation raises a :class:`SchemaError`; such errors are never retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from choreograph.core.errors import ChoreographError, NotFound

if TYPE_CHECKING:
    from choreograph.schema.compatibility import CompatibilityReport


class SchemaError(ChoreographError):
    """Root of the schema layer's errors."""


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason a payload is invalid: the field path, the rule it broke, and a message."""

    path: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} (rule {self.rule})"


class SchemaViolation(SchemaError, ValueError):
    """A payload does not match the schema of its event type and version.

    ``errors`` lists every offending field; the message names them.
    """

    def __init__(self, event_type: str, version: int | None, errors: tuple[FieldError, ...]) -> None:
        label = f"{event_type} v{version}" if version is not None else event_type
        shown = "; ".join(str(e) for e in errors[:5])
        more = f"; and {len(errors) - 5} more" if len(errors) > 5 else ""
        super().__init__(f"{label}: invalid payload: {shown}{more}")
        self.event_type = event_type
        self.version = version
        self.errors = errors


class IncompatibleSchema(SchemaError, ValueError):
    """A schema version breaks the compatibility mode of its event type.

    ``report`` holds the structured findings; ``report.render()`` explains them
    as a diff.
    """

    def __init__(self, report: CompatibilityReport) -> None:
        findings = "; ".join(f"{f.path}: {f.rule}" for f in report.findings[:5])
        more = f"; and {len(report.findings) - 5} more" if len(report.findings) > 5 else ""
        super().__init__(f"{report.event_type} v{report.version} is not {report.mode} compatible: {findings}{more}")
        self.report = report


class SchemaConflict(SchemaError, ValueError):
    """A version is already registered with a different schema, or versions would go backwards."""


class UnknownSchema(SchemaError, NotFound):
    """The registry holds no such event type or version."""


class UpcastError(SchemaError, LookupError):
    """No chain of upcasters leads from the payload's version to the wanted one."""


class SchemaStoreError(SchemaError):
    """The schema store failed (database error, unreadable file)."""
