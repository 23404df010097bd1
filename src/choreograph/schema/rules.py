"""The names of the compatibility rules, defined once, with what each one means.

A rule names a *change* between an old and a new schema, seen from the old
one: ``field-added`` means the new version has a field the old one lacks. A
finding says which rule fired and in which direction it breaks readers
(backward: consumers on the new schema reading old data; forward: consumers
on the old schema reading new data).
"""

from __future__ import annotations

from enum import StrEnum


class Rule(StrEnum):
    """A kind of schema change that can break readers."""

    FIELD_ADDED = "field-added"
    REQUIRED_FIELD_ADDED = "required-field-added"
    FIELD_REMOVED = "field-removed"
    REQUIRED_FIELD_REMOVED = "required-field-removed"
    FIELD_MADE_REQUIRED = "field-made-required"
    FIELD_MADE_OPTIONAL = "field-made-optional"
    DEFAULT_CHANGED = "default-changed"
    TYPE_WIDENED = "type-widened"
    TYPE_NARROWED = "type-narrowed"
    TYPE_CHANGED = "type-changed"
    ENUM_VALUES_ADDED = "enum-values-added"
    ENUM_VALUES_REMOVED = "enum-values-removed"
    ENUM_VALUES_CHANGED = "enum-values-changed"
    CONSTRAINT_TIGHTENED = "constraint-tightened"
    CONSTRAINT_RELAXED = "constraint-relaxed"
    CONSTRAINT_CHANGED = "constraint-changed"
    CONTENT_MODEL_CLOSED = "content-model-closed"
    CONTENT_MODEL_OPENED = "content-model-opened"
    RESERVED_FIELD_REUSED = "reserved-field-reused"
    VERSION_CHANGED_IN_PLACE = "version-changed-in-place"
    VERSION_OUT_OF_ORDER = "version-out-of-order"


EXPLANATIONS: dict[Rule, str] = {
    Rule.FIELD_ADDED: "the new version declares an optional field the old one lacks",
    Rule.REQUIRED_FIELD_ADDED: "the new version declares a required field the old one lacks",
    Rule.FIELD_REMOVED: "the new version drops an optional field",
    Rule.REQUIRED_FIELD_REMOVED: "the new version drops a required field",
    Rule.FIELD_MADE_REQUIRED: "an optional field (or one with a default) became required",
    Rule.FIELD_MADE_OPTIONAL: "a required field became optional (for example it got a default)",
    Rule.DEFAULT_CHANGED: "the default value changed (never breaks validation, may change meaning)",
    Rule.TYPE_WIDENED: "the new type accepts more values (integer -> number, T -> T | null)",
    Rule.TYPE_NARROWED: "the new type accepts fewer values (number -> integer, T | null -> T)",
    Rule.TYPE_CHANGED: "the old and new types do not contain each other (string -> integer)",
    Rule.ENUM_VALUES_ADDED: "the new enum allows values the old one did not (or the enum was dropped)",
    Rule.ENUM_VALUES_REMOVED: "the new enum no longer allows some old values (or an enum was introduced)",
    Rule.ENUM_VALUES_CHANGED: "values were both added to and removed from the enum",
    Rule.CONSTRAINT_TIGHTENED: "a bound, length, pattern or format constraint was added or narrowed",
    Rule.CONSTRAINT_RELAXED: "a bound, length, pattern or format constraint was removed or widened",
    Rule.CONSTRAINT_CHANGED: "a pattern, format or multipleOf changed to a different value",
    Rule.CONTENT_MODEL_CLOSED: "an open object (extra fields allowed) became closed (additionalProperties false)",
    Rule.CONTENT_MODEL_OPENED: "a closed object (additionalProperties false) became open",
    Rule.RESERVED_FIELD_REUSED: "a field removed in an earlier version came back with a different type",
    Rule.VERSION_CHANGED_IN_PLACE: "a registered version was edited instead of getting a new version number",
    Rule.VERSION_OUT_OF_ORDER: "a version lower than the latest registered one is not registered yet",
}
"""One line per rule, used in reports and in docs/schemas.md."""
