"""Compare a reader schema with a writer schema: can the reader accept every value the writer allows?

This is the engine under every compatibility mode. BACKWARD compares
reader = new with writer = old, FORWARD the reverse. Each way data written
under the writer schema could be rejected by the reader schema becomes a
:class:`Finding` named by the *change* from old to new (:class:`Rule`).

The semantics are those of JSON Schema validation, exactly:

- an object without ``additionalProperties: false`` is *open*: data may carry
  any other field with any value, so a reader that types such a field may
  reject it;
- ``integer`` is a subset of ``number``; ``T | null`` is a union of branches;
- ``enum``/``const`` are value sets; numeric, length, pattern and format
  constraints are compared bound by bound.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

from choreograph.schema.rules import Rule
from choreograph.schema.shape import (
    ANY,
    Branch,
    Schema,
    additional_of,
    branches,
    child_path,
    describe,
    properties_of,
    type_accepts,
    value_key,
)

Direction = Literal["backward", "forward"]

ROOT: Final = "(root)"
"""How findings name the top of the payload."""

_LOWER: Final = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER: Final = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_EXACT: Final = ("pattern", "format", "multipleOf", "uniqueItems")


@dataclass(frozen=True, slots=True)
class Finding:
    """One incompatibility: where, which rule, which direction it breaks, old and new shapes.

    ``old``/``new`` describe the field in each version (``absent`` when it
    does not exist). ``old_version``/``new_version`` are filled in when the
    schemas came from a registry.
    """

    path: str
    rule: Rule
    direction: Direction
    old: str
    new: str
    detail: str
    old_version: int | None = None
    new_version: int | None = None

    def render(self) -> str:
        """Explain the finding as a small diff."""
        old_label = f"v{self.old_version}" if self.old_version is not None else "old"
        new_label = f"v{self.new_version}" if self.new_version is not None else "new"
        if self.direction == "backward":
            who = f"consumers on {new_label} reading data written with {old_label}"
        else:
            who = f"consumers still on {old_label} reading data written with {new_label}"
        return "\n".join(
            [
                f"@@ {self.path} @@ {self.rule} ({self.direction}: {who})",
                f"- {old_label}: {self.old}",
                f"+ {new_label}: {self.new}",
                f"  {self.detail}",
            ]
        )

    def with_versions(self, old_version: int, new_version: int) -> Finding:
        """Return a copy labelled with the versions compared."""
        return replace(self, old_version=old_version, new_version=new_version)


def compare(old: Mapping[str, Any], new: Mapping[str, Any], direction: Direction) -> list[Finding]:
    """Return how readers break between ``old`` and ``new`` in ``direction``; empty means compatible.

    Pure and deterministic; findings come in schema order.
    """
    return _Comparison(old, new, direction).node(
        new if direction == "backward" else old, old if direction == "backward" else new, ""
    )


def _label(path: str) -> str:
    return path or ROOT


def _covers(outer: set[str], inner: set[str]) -> bool:
    return all(any(type_accepts(o, i) for o in outer) for i in inner)


class _Comparison:
    def __init__(self, old: Mapping[str, Any], new: Mapping[str, Any], direction: Direction) -> None:
        self.direction: Direction = direction
        self.backward = direction == "backward"
        self.reader_root = new if self.backward else old
        self.writer_root = old if self.backward else new
        self._active: set[tuple[str, str]] = set()

    # -- naming helpers: map (reader, writer) back to (old, new) ------------------------------

    def _old_new(self, reader: str, writer: str) -> tuple[str, str]:
        return (writer, reader) if self.backward else (reader, writer)

    def _finding(self, path: str, rule: Rule, reader: str, writer: str, detail: str) -> Finding:
        old, new = self._old_new(reader, writer)
        return Finding(_label(path), rule, self.direction, old, new, detail)

    def _rdesc(self, node: Schema) -> str:
        return describe(node, self.reader_root)

    def _wdesc(self, node: Schema) -> str:
        return describe(node, self.writer_root)

    # -- nodes --------------------------------------------------------------------------------

    def node(self, reader: Schema, writer: Schema, path: str) -> list[Finding]:
        rbs = branches(reader, self.reader_root)
        wbs = branches(writer, self.writer_root)
        if any(b.type == ANY for b in rbs):
            return []
        out: list[Finding] = []
        mismatch = False
        for wb in wbs:
            candidates = [rb for rb in rbs if type_accepts(rb.type, wb.type)]
            candidates.sort(key=lambda rb: rb.type != wb.type)
            if not candidates:
                mismatch = True
                continue
            best: list[Finding] | None = None
            for rb in candidates:
                found = self._branch(rb, wb, path)
                if not found:
                    best = []
                    break
                if best is None:
                    best = found
            out.extend(best or [])
        if mismatch:
            out.insert(0, self._type_finding(rbs, wbs, reader, writer, path))
        return _unique(out)

    def _type_finding(self, rbs: list[Branch], wbs: list[Branch], reader: Schema, writer: Schema, path: str) -> Finding:
        rtypes, wtypes = {b.type for b in rbs}, {b.type for b in wbs}
        old_types, new_types = (wtypes, rtypes) if self.backward else (rtypes, wtypes)
        if self.backward and _covers(old_types, new_types):
            rule = Rule.TYPE_NARROWED
        elif not self.backward and _covers(new_types, old_types):
            rule = Rule.TYPE_WIDENED
        else:
            rule = Rule.TYPE_CHANGED
        detail = "the reader's type does not accept every value the writer's type allows"
        return self._finding(path, rule, self._rdesc(reader), self._wdesc(writer), detail)

    def _branch(self, rb: Branch, wb: Branch, path: str) -> list[Finding]:
        key = (rb.ref or "", wb.ref or "")
        if rb.ref and wb.ref:
            if key in self._active:
                return []  # recursive definition already being compared: assume it holds
            self._active.add(key)
        try:
            out = self._enum(rb, wb, path) + self._constraints(rb, wb, path)
            if rb.type == "object" and wb.type == "object":
                out += self._object(rb, wb, path)
            elif rb.type == "array" and wb.type == "array":
                out += self._array(rb, wb, path)
            return out
        finally:
            if rb.ref and wb.ref:
                self._active.discard(key)

    def _enum(self, rb: Branch, wb: Branch, path: str) -> list[Finding]:
        if rb.enum is None:
            return []
        rvals = {value_key(v) for v in rb.enum}
        if wb.enum is not None and {value_key(v) for v in wb.enum} <= rvals:
            return []
        wvals = None if wb.enum is None else {value_key(v) for v in wb.enum}
        old, new = (wvals, rvals) if self.backward else (rvals, wvals)
        if self.backward and (old is None or (new is not None and new <= old)):
            rule = Rule.ENUM_VALUES_REMOVED
        elif not self.backward and (new is None or (old is not None and old <= new)):
            rule = Rule.ENUM_VALUES_ADDED
        else:
            rule = Rule.ENUM_VALUES_CHANGED
        rtext = _enum_text(rb)
        wtext = _enum_text(wb)
        detail = "the reader's allowed values do not include every value the writer may send"
        return [self._finding(path, rule, rtext, wtext, detail)]

    def _constraints(self, rb: Branch, wb: Branch, path: str) -> list[Finding]:
        out: list[Finding] = []
        tightened = Rule.CONSTRAINT_TIGHTENED if self.backward else Rule.CONSTRAINT_RELAXED
        r, w = rb.schema, wb.schema
        for key in (*_LOWER, *_UPPER, *_EXACT):
            rv = r.get(key)
            if rv is None or rv is False:
                continue
            wv = w.get(key)
            if key in _LOWER:
                broken = wv is None or wv < rv
                rule = tightened
            elif key in _UPPER:
                broken = wv is None or wv > rv
                rule = tightened
            else:
                broken = wv != rv
                rule = tightened if wv is None or wv is False else Rule.CONSTRAINT_CHANGED
            if broken:
                detail = f"the reader requires {key}={json.dumps(rv)}, the writer does not guarantee it"
                out.append(self._finding(path, rule, _constraint_text(key, rv), _constraint_text(key, wv), detail))
        return out

    def _object(self, rb: Branch, wb: Branch, path: str) -> list[Finding]:
        out: list[Finding] = []
        rprops, wprops = properties_of(rb), properties_of(wb)
        rreq, wreq = set(rb.schema.get("required", ())), set(wb.schema.get("required", ()))
        radd, wadd = additional_of(rb), additional_of(wb)
        for name in [*rprops, *(n for n in wprops if n not in rprops)]:
            here = child_path(path, name)
            if name in rprops and name in wprops:
                if name in rreq and name not in wreq:
                    rule = Rule.FIELD_MADE_REQUIRED if self.backward else Rule.FIELD_MADE_OPTIONAL
                    out.append(
                        self._finding(
                            here,
                            rule,
                            "required " + self._rdesc(rprops[name]),
                            "optional " + self._wdesc(wprops[name]),
                            "the reader requires the field, the writer may leave it out",
                        )
                    )
                out += self.node(rprops[name], wprops[name], here)
            elif name in wprops:
                out += self._writer_only(name, here, wprops[name], name in wreq, radd)
            else:
                out += self._reader_only(name, here, rprops[name], name in rreq, wadd)
        if radd is False and wadd is not False:
            rule = Rule.CONTENT_MODEL_CLOSED if self.backward else Rule.CONTENT_MODEL_OPENED
            out.append(
                self._finding(
                    path,
                    rule,
                    "closed (additionalProperties: false)",
                    "open (extra fields allowed)",
                    "the writer allows extra fields, the reader rejects them",
                )
            )
        elif isinstance(radd, Mapping):
            out += self.node(radd, wadd, f"{path}{{*}}")
        return out

    def _writer_only(self, name: str, here: str, wnode: Schema, required: bool, radd: Schema) -> list[Finding]:
        # The writer may send the field; the reader does not declare it.
        if radd is True:
            return []
        if isinstance(radd, Mapping):
            return self.node(radd, wnode, here)
        if self.backward:  # old had it, new dropped it and is closed
            rule = Rule.REQUIRED_FIELD_REMOVED if required else Rule.FIELD_REMOVED
            detail = f"data written with the old schema carries `{name}`, the new closed schema rejects it"
        else:  # new added it, old is closed
            rule = Rule.REQUIRED_FIELD_ADDED if required else Rule.FIELD_ADDED
            detail = f"data written with the new schema carries `{name}`, the old closed schema rejects it"
        prefix = "required " if required else "optional "
        return [self._finding(here, rule, "absent (closed object)", prefix + self._wdesc(wnode), detail)]

    def _reader_only(self, name: str, here: str, rnode: Schema, required: bool, wadd: Schema) -> list[Finding]:
        # The reader declares the field; the writer does not.
        if required:
            rule = Rule.REQUIRED_FIELD_ADDED if self.backward else Rule.REQUIRED_FIELD_REMOVED
            detail = f"the reader requires `{name}`, data from the writer never has it"
            return [self._finding(here, rule, "required " + self._rdesc(rnode), "absent", detail)]
        if wadd is False:
            return []
        if not self.node(rnode, wadd, here):
            return []
        rule = Rule.FIELD_ADDED if self.backward else Rule.FIELD_REMOVED
        detail = (
            f"the writer's object is open, so its data may carry `{name}` with any value "
            "and the reader's type for it may reject that; close the object (extra='forbid') "
            "or keep the field"
        )
        return [self._finding(here, rule, "optional " + self._rdesc(rnode), "absent (open object)", detail)]

    def _array(self, rb: Branch, wb: Branch, path: str) -> list[Finding]:
        out: list[Finding] = []
        r, w = rb.schema, wb.schema
        rprefix = _prefix(r)
        wprefix = _prefix(w)
        for i in range(min(len(rprefix), len(wprefix))):
            out += self.node(rprefix[i], wprefix[i], f"{path}[{i}]")
        rrest = _rest(r, rprefix)
        wrest = _rest(w, wprefix)
        if rrest is not None:
            for i in range(len(rprefix), len(wprefix)):
                out += self.node(rrest, wprefix[i], f"{path}[{i}]")
            if wrest is not None:
                out += self.node(rrest, wrest, f"{path}[]")
        if wrest is not None:
            for i in range(len(wprefix), len(rprefix)):
                out += self.node(rprefix[i], wrest, f"{path}[{i}]")
        return out


def _prefix(schema: Mapping[str, Any]) -> list[Schema]:
    prefix = schema.get("prefixItems")
    if isinstance(prefix, list):
        return prefix
    items = schema.get("items")
    return items if isinstance(items, list) else []  # draft-07 tuple form


def _rest(schema: Mapping[str, Any], prefix: list[Schema]) -> Schema | None:
    items = schema.get("items")
    if isinstance(items, bool | Mapping):
        return items
    return True if not prefix else None


def _enum_text(branch: Branch) -> str:
    if branch.enum is None:
        return f"any {branch.type}"
    return f"{branch.type} in [{', '.join(json.dumps(v) for v in branch.enum)}]"


def _constraint_text(key: str, value: Any) -> str:
    return "unconstrained" if value is None else f"{key}={json.dumps(value)}"


def _unique(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[str, str, str, str]] = set()
    out: list[Finding] = []
    for f in findings:
        key = (f.path, f.rule, f.old, f.new)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out
