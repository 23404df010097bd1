"""Normalised views of JSON Schema nodes: references resolved, unions split, types described.

The compatibility rules compare *branches*. A node such as
``{"anyOf": [{"type": "integer"}, {"type": "null"}]}`` is the union of two
branches; each branch has exactly one JSON type (or ``any`` when the node does
not constrain the type). ``enum``/``const`` become branch value sets. Only
local references (``#/$defs/...``, ``#/definitions/...``) are supported, which
is all Pydantic emits.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from choreograph.schema.errors import SchemaError

ANY: Final = "any"
"""The branch type of a node that accepts every JSON value."""

ANNOTATIONS: Final = frozenset(
    {"title", "description", "examples", "$comment", "deprecated", "readOnly", "writeOnly", "$schema", "$id"}
)
"""Keywords that document a schema without changing which values it accepts."""

_MAX_REF_DEPTH: Final = 64

Schema = Mapping[str, Any] | bool


@dataclass(frozen=True, slots=True)
class Branch:
    """One alternative of a node: a single JSON type with its constraints.

    ``enum`` is the tuple of allowed values (of this type) or None when any
    value of the type is allowed. ``ref`` names the definition the branch came
    through, to detect recursion.
    """

    type: str
    schema: Mapping[str, Any]
    enum: tuple[Any, ...] | None = None
    ref: str | None = None


def json_type(value: Any) -> str:
    """Return the JSON type name of a JSON-compatible Python value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    return "object"


def type_accepts(reader: str, writer: str) -> bool:
    """Return whether values of JSON type ``writer`` are valid for type ``reader`` (integer < number)."""
    return reader in (ANY, writer) or (reader == "number" and writer == "integer")


def resolve_pointer(root: Mapping[str, Any], ref: str) -> Any:
    """Return the node that the local reference ``ref`` (``#/...``) points at inside ``root``."""
    if not ref.startswith("#"):
        raise SchemaError(f"unsupported $ref {ref!r}: only local references (#/$defs/...) are supported")
    node: Any = root
    for raw in ref[1:].split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise SchemaError(f"$ref {ref!r} does not resolve inside the schema")
    return node


def deref(node: Schema, root: Mapping[str, Any]) -> tuple[Schema, str | None]:
    """Follow ``$ref`` chains; sibling keywords of a ``$ref`` are kept on top of the target."""
    ref_name: str | None = None
    for _ in range(_MAX_REF_DEPTH):
        if isinstance(node, bool) or "$ref" not in node:
            return node, ref_name
        ref_name = str(node["$ref"])
        target = resolve_pointer(root, ref_name)
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        if isinstance(target, bool):
            return (target if not siblings else {**siblings}), ref_name
        node = {**target, **siblings}
    raise SchemaError(f"$ref chain deeper than {_MAX_REF_DEPTH} at {ref_name!r}")


def _merge_all_of(node: Mapping[str, Any], root: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {k: v for k, v in node.items() if k != "allOf"}
    for part in node["allOf"]:
        resolved, _ = deref(part, root)
        if isinstance(resolved, bool):
            continue
        for key, value in resolved.items():
            if key == "properties":
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required":
                merged["required"] = sorted({*merged.get("required", ()), *value})
            else:
                merged.setdefault(key, value)
    return merged


def _inferred_types(node: Mapping[str, Any], enum: list[Any] | None) -> list[str]:
    declared = node.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list):
        return [str(t) for t in declared]
    if enum is not None:
        return sorted({json_type(v) for v in enum})
    if any(k in node for k in ("properties", "additionalProperties", "required")):
        return ["object"]
    if any(k in node for k in ("items", "prefixItems")):
        return ["array"]
    return [ANY]


def _matches(value: Any, type_name: str) -> bool:
    actual = json_type(value)
    return type_accepts(type_name, actual)


def branches(node: Schema, root: Mapping[str, Any], _depth: int = 0) -> list[Branch]:
    """Split ``node`` into its alternatives. ``false`` has none; ``true`` or ``{}`` is one ``any``."""
    if _depth > _MAX_REF_DEPTH:
        raise SchemaError("schema unions nest too deeply")
    resolved, ref = deref(node, root)
    if resolved is True:
        return [Branch(ANY, {}, None, ref)]
    if resolved is False:
        return []
    for key in ("anyOf", "oneOf"):
        if key in resolved:
            return [b for sub in resolved[key] for b in branches(sub, root, _depth + 1)]
    if "allOf" in resolved:
        resolved = _merge_all_of(resolved, root)
    enum: list[Any] | None = None
    if "const" in resolved:
        enum = [resolved["const"]]
    elif "enum" in resolved:
        enum = list(resolved["enum"])
    out: list[Branch] = []
    for type_name in _inferred_types(resolved, enum):
        values = None if enum is None else tuple(v for v in enum if _matches(v, type_name))
        out.append(Branch(type_name, resolved, values, ref))
    return out


def properties_of(branch: Branch) -> Mapping[str, Schema]:
    """Return the declared properties of an object branch."""
    props = branch.schema.get("properties", {})
    return props if isinstance(props, Mapping) else {}


def additional_of(branch: Branch) -> Schema:
    """Return ``additionalProperties`` of an object branch: True (open), False (closed) or a schema."""
    value = branch.schema.get("additionalProperties", True)
    if isinstance(value, bool | Mapping):
        return value
    return True


def value_key(value: Any) -> str:
    """Return a hashable, order-independent key for a JSON value (for enum set operations)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


_CONSTRAINTS: Final = (
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minItems",
    "maxItems",
    "uniqueItems",
)


def _describe_branch(branch: Branch, root: Mapping[str, Any], depth: int) -> str:
    if branch.enum is not None:
        values = ", ".join(json.dumps(v) for v in branch.enum)
        return f"{branch.type} in [{values}]" if len(branch.enum) != 1 else f"const {values}"
    text = branch.type
    if branch.type == "array" and depth < 3:
        items = branch.schema.get("items")
        if items is not None:
            text = f"array[{describe(items, root, depth + 1)}]"
    elif branch.type == "object" and branch.ref:
        text = f"object {branch.ref.rsplit('/', 1)[-1]}"
    extras = [f"{k}={json.dumps(branch.schema[k])}" for k in _CONSTRAINTS if k in branch.schema]
    return " ".join([text, *extras])


def describe(node: Schema, root: Mapping[str, Any], depth: int = 0) -> str:
    """Return a short human description such as ``integer | null`` or ``string format="date-time"``."""
    parts = [_describe_branch(b, root, depth) for b in branches(node, root)]
    return " | ".join(parts) if parts else "nothing (false)"


def canonical(node: Schema, root: Mapping[str, Any], *, keep_defaults: bool = True) -> Any:
    """Return ``node`` with references inlined and annotations dropped, for comparing structure.

    Recursive references stay as ``{"$ref": ...}`` after their first expansion.
    ``x-`` extension keywords are dropped too; ``default`` only if asked.
    """
    return _canonical(node, root, (), keep_defaults)


def _canonical(node: Any, root: Mapping[str, Any], stack: tuple[str, ...], keep_defaults: bool) -> Any:
    if isinstance(node, list):
        return [_canonical(v, root, stack, keep_defaults) for v in node]
    if not isinstance(node, Mapping):
        return node
    if "$ref" in node:
        ref = str(node["$ref"])
        if ref in stack:
            return {"$ref": ref}
        resolved, _ = deref({"$ref": ref}, root)
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        merged = {**resolved, **siblings} if isinstance(resolved, Mapping) else resolved
        return _canonical(merged, root, (*stack, ref), keep_defaults)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ANNOTATIONS or key in ("$defs", "definitions") or key.startswith("x-"):
            continue
        if key == "default" and not keep_defaults:
            continue
        if key in ("properties", "patternProperties", "$defs"):
            out[key] = {n: _canonical(v, root, stack, keep_defaults) for n, v in value.items()}
        elif key in ("enum", "const", "default", "required"):
            out[key] = value
        else:
            out[key] = _canonical(value, root, stack, keep_defaults)
    return out


@dataclass(frozen=True, slots=True)
class FieldShape:
    """A field found by :func:`walk_fields`: its schema node, whether required, and its default."""

    path: str
    node: Schema
    required: bool
    has_default: bool
    default: Any


def child_path(path: str, name: str) -> str:
    """Return the path of property ``name`` below ``path`` (``a.b``)."""
    return f"{path}.{name}" if path else name


def walk_fields(schema: Mapping[str, Any]) -> Iterator[FieldShape]:
    """Yield every object property in ``schema``, depth first, nested objects and arrays included.

    Array elements add ``[]`` and map values ``{*}`` to the path. Recursive
    definitions are walked once.
    """
    yield from _walk(schema, schema, "", ())


def _walk(node: Schema, root: Mapping[str, Any], path: str, stack: tuple[str, ...]) -> Iterator[FieldShape]:
    for branch in branches(node, root):
        if branch.ref is not None and branch.ref in stack:
            continue
        inner = stack if branch.ref is None else (*stack, branch.ref)
        if branch.type == "object":
            required = set(branch.schema.get("required", ()))
            for name, sub in properties_of(branch).items():
                here = child_path(path, name)
                has_default = isinstance(sub, Mapping) and "default" in sub
                default = sub.get("default") if isinstance(sub, Mapping) else None
                yield FieldShape(here, sub, name in required, has_default, default)
                yield from _walk(sub, root, here, inner)
            extra = additional_of(branch)
            if isinstance(extra, Mapping):
                yield from _walk(extra, root, f"{path}{{*}}", inner)
        elif branch.type == "array":
            items = branch.schema.get("items")
            if isinstance(items, Mapping):
                yield from _walk(items, root, f"{path}[]", inner)
