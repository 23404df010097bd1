"""Derive a JSON Schema (draft 2020-12) from an Event model, stamped with its type and version."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

from pydantic.errors import PydanticUserError

from choreograph.core.errors import ContractError
from choreograph.core.event import Event
from choreograph.schema.errors import SchemaError
from choreograph.schema.shape import canonical

DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
TYPE_KEY: Final = "x-choreograph-type"
VERSION_KEY: Final = "x-choreograph-version"


def derive_schema(event_cls: type[Event]) -> dict[str, Any]:
    """Return the JSON Schema of ``event_cls``'s payload, with ``x-choreograph-type``/``-version``.

    The schema is Pydantic's validation schema: it describes what a consumer
    using this class accepts. Events are closed by default (Event sets
    ``extra="forbid"``, so ``additionalProperties`` is false); nested models
    are open unless they forbid extras too. Returns a fresh dict each call.
    """
    event_type = event_cls.event_type()
    try:
        body = event_cls.model_json_schema(mode="validation")
    except PydanticUserError as exc:  # includes PydanticInvalidForJsonSchema
        raise ContractError(f"{event_cls.__qualname__}: cannot derive a JSON Schema: {exc}") from exc
    return {"$schema": DIALECT, **body, TYPE_KEY: event_type, VERSION_KEY: event_cls.event_version()}


def schema_identity(schema: Mapping[str, Any]) -> tuple[str, int]:
    """Return the (type, version) a schema declares in its ``x-choreograph-*`` keywords."""
    event_type = schema.get(TYPE_KEY)
    version = schema.get(VERSION_KEY)
    if not isinstance(event_type, str) or not event_type:
        raise SchemaError(f"schema has no {TYPE_KEY!r} string; derive it with derive_schema()")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SchemaError(f"schema of {event_type} has no valid {VERSION_KEY!r} (an int >= 1)")
    return event_type, version


def fingerprint(schema: Mapping[str, Any]) -> str:
    """Return a stable hash of what the schema accepts.

    References are inlined and annotations (title, description, examples,
    ``x-`` keywords) ignored, so renaming a nested model or editing a docstring
    keeps the fingerprint; defaults and every validation keyword count.
    """
    text = json.dumps(canonical(schema, schema), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
