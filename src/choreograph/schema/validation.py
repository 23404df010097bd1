"""Validate payloads on publish and on consume.

The fast path is the Pydantic model itself: :func:`validate_payload` is one
``model_validate`` call (a few microseconds). A prebuilt ``jsonschema``
validator costs about 160 us per event, so :class:`JsonSchemaValidator` is
for tools and for payloads without a Python class (the CLI, dead-letter
inspection), never for the hot path.

:class:`SchemaGuard` checks each event *class* against the registry once
(cached), so publishing an unregistered, incompatible version fails on the
first publish with the findings, and later publishes pay nothing.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pydantic import ValidationError

from choreograph.core.errors import MissingExtraError
from choreograph.core.event import Event
from choreograph.schema.derive import fingerprint, schema_identity
from choreograph.schema.errors import FieldError, IncompatibleSchema, SchemaViolation

if TYPE_CHECKING:
    from choreograph.schema.registry import SchemaRegistry
    from choreograph.schema.topology import Topology
    from choreograph.schema.upcast import Upcasters

E = TypeVar("E", bound=Event)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


def field_errors(exc: ValidationError) -> tuple[FieldError, ...]:
    """Return the field path, Pydantic error type (the rule) and message of each error."""
    return tuple(FieldError(_loc(tuple(e["loc"])), e["type"], e["msg"]) for e in exc.errors())


def validate_payload(
    event_cls: type[E],
    data: Any,
    *,
    version: int | None = None,
    upcasters: Upcasters | None = None,
) -> E:
    """Return ``data`` validated as ``event_cls``; raise SchemaViolation naming each bad field.

    If ``version`` (the envelope's ``schemaversion``) is older than the class's
    and ``upcasters`` are given, the payload is upcast first (UpcastError if a
    step is missing). Pure apart from the upcasters; safe to call concurrently.
    """
    target = event_cls.__event_version__
    if version is not None and version < target and upcasters is not None and isinstance(data, dict):
        data = upcasters.upcast(event_cls.event_type(), version, data, target)
    try:
        # What model_validate does, without its wrapper: this runs once per consumed event.
        return cast(E, event_cls.__pydantic_validator__.validate_python(data))
    except ValidationError as exc:
        raise SchemaViolation(event_cls.event_type(), target, field_errors(exc)) from None


def validate_event(event: Event) -> dict[str, Any]:
    """Return ``event``'s JSON payload after validating it again (catches ``model_construct`` misuse).

    Raises SchemaViolation naming the fields.
    """
    data = event.model_dump(mode="json", warnings=False)  # validated next, with field-level errors
    validate_payload(type(event), data)
    return data


class JsonSchemaValidator:
    """Validate payloads against stored JSON Schemas with ``jsonschema`` (slow path, tools only).

    Compiled validators are cached by schema fingerprint. Thread-safe.
    Needs the ``schema`` extra.
    """

    def __init__(self) -> None:
        try:
            self._jsonschema = importlib.import_module("jsonschema")
        except ImportError as exc:
            raise MissingExtraError("JSON Schema validation", "schema", "jsonschema") from exc
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()

    def validate(self, schema: Mapping[str, Any], data: Any) -> None:
        """Raise SchemaViolation listing every error of ``data`` against ``schema``."""
        key = fingerprint(schema)
        with self._lock:
            validator = self._cache.get(key)
            if validator is None:
                cls = self._jsonschema.validators.validator_for(schema)
                validator = cls(schema)
                self._cache[key] = validator
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        if errors:
            event_type, version = schema_identity(schema)
            raise SchemaViolation(
                event_type,
                version,
                tuple(FieldError(_loc(tuple(err.absolute_path)), str(err.validator), err.message) for err in errors),
            )


class SchemaGuard:
    """Admit event classes against a registry once, then validate payloads with Pydantic.

    ``register=True`` registers a compatible new version on first use (the
    embedded, no-server setup); ``register=False`` leaves registration to CI
    (``choreograph schema register``) and only refuses incompatible versions.
    :meth:`admit` blocks on the registry the first time per class and is cached
    after; everything else is pure and thread-safe.
    """

    def __init__(self, registry: SchemaRegistry, *, register: bool = True, upcasters: Upcasters | None = None) -> None:
        self.registry = registry
        self.register = register
        self.upcasters = upcasters
        self._admitted: dict[type[Event], str] = {}
        self._lock = threading.Lock()

    def admit(self, event_cls: type[Event]) -> None:
        """Check ``event_cls`` against the registry (once); raise IncompatibleSchema if it breaks the mode."""
        if event_cls in self._admitted:
            return
        with self._lock:
            if event_cls in self._admitted:
                return
            if self.register:
                record = self.registry.register(event_cls)
                self._admitted[event_cls] = record.fingerprint
                return
            report = self.registry.check(event_cls)
            if not report.compatible:
                raise IncompatibleSchema(report)
            self._admitted[event_cls] = report.status

    def admit_topology(self, topology: Topology) -> None:
        """Admit every event class an app publishes or consumes (call at startup)."""
        for event_cls in topology.events():
            self.admit(event_cls)

    def outgoing(self, event: Event) -> dict[str, Any]:
        """Admit the event's class and return its JSON payload (validated again)."""
        self.admit(type(event))
        return validate_event(event)

    def incoming(self, event_cls: type[E], data: Any, *, version: int | None = None) -> E:
        """Validate an incoming payload (upcasting from ``version`` if needed); raise SchemaViolation."""
        return validate_payload(event_cls, data, version=version, upcasters=self.upcasters)
