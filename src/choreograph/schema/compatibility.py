"""Compatibility modes and the checks behind them.

======================  =====================================================
Mode                    A new version must ...
======================  =====================================================
BACKWARD (default)      let consumers on it read data written with the latest
BACKWARD_TRANSITIVE     ... with every earlier version
FORWARD                 be readable by consumers still on the latest version
FORWARD_TRANSITIVE      ... on every earlier version
FULL                    BACKWARD and FORWARD against the latest
FULL_TRANSITIVE         BACKWARD and FORWARD against every earlier version
NONE                    nothing (any change is accepted)
======================  =====================================================

In every mode but NONE, a field name that existed in an earlier version and
was removed is *reserved*: it may come back only with the same type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from choreograph.core.errors import ConfigurationError
from choreograph.schema.comparison import ROOT, Direction, Finding, compare
from choreograph.schema.rules import Rule
from choreograph.schema.shape import canonical, describe, walk_fields


class Compatibility(StrEnum):
    """How a new schema version must relate to earlier ones. Set per event type."""

    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"

    @property
    def directions(self) -> tuple[Direction, ...]:
        """Return which reader directions this mode checks."""
        base = self.value.removesuffix("_TRANSITIVE")
        if base == "BACKWARD":
            return ("backward",)
        if base == "FORWARD":
            return ("forward",)
        if base == "FULL":
            return ("backward", "forward")
        return ()

    @property
    def transitive(self) -> bool:
        """Return whether a new version is checked against every earlier version, not just the latest."""
        return self.value.endswith("_TRANSITIVE")

    @classmethod
    def parse(cls, text: str) -> Compatibility:
        """Return the mode named ``text`` (case-insensitive); raise ConfigurationError otherwise."""
        try:
            return cls(text.strip().upper().replace("-", "_"))
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise ConfigurationError(f"unknown compatibility mode {text!r}; use one of {names}") from None


DEFAULT_MODE = Compatibility.BACKWARD

Status = Literal["new-type", "new-version", "registered", "changed-in-place", "out-of-order"]


@dataclass(frozen=True, slots=True)
class CompatibilityReport:
    """The outcome of checking one schema version against the earlier ones.

    ``status`` says what the version is relative to the registry: a new type,
    a new version, already registered (unchanged), changed in place, or older
    than the latest. ``compared_with`` lists the versions it was checked
    against.
    """

    event_type: str
    version: int
    mode: Compatibility
    findings: tuple[Finding, ...] = ()
    compared_with: tuple[int, ...] = ()
    status: Status = "new-version"

    @property
    def compatible(self) -> bool:
        """Return True when nothing breaks."""
        return not self.findings

    def summary(self) -> str:
        """Return one line: the type, version, status and verdict."""
        label = f"{self.event_type} v{self.version}"
        if self.findings:
            against = ", ".join(f"v{v}" for v in self.compared_with) or "the registry"
            return f"{label}: INCOMPATIBLE with {against} under {self.mode} ({len(self.findings)} finding(s))"
        if self.status == "new-type":
            return f"{label}: new event type"
        if self.status == "registered":
            return f"{label}: registered, unchanged"
        against = ", ".join(f"v{v}" for v in self.compared_with) or "nothing"
        return f"{label}: compatible with {against} under {self.mode}"

    def render(self) -> str:
        """Explain the verdict: the summary, then each finding as a diff."""
        return "\n\n".join([self.summary(), *(f.render() for f in self.findings)])


def check_compatibility(
    new: Mapping[str, Any],
    earlier: Sequence[tuple[int, Mapping[str, Any]]],
    mode: Compatibility,
    *,
    event_type: str = "",
    version: int = 0,
) -> CompatibilityReport:
    """Check schema ``new`` against ``earlier`` (``(version, schema)`` pairs, ascending) under ``mode``.

    Pure: reads nothing but its arguments. Non-transitive modes compare with the
    last entry only; the reserved-name rule always looks at all of them.
    """
    if not earlier:
        return CompatibilityReport(event_type, version, mode, status="new-type")
    if mode is Compatibility.NONE:
        return CompatibilityReport(event_type, version, mode, compared_with=())
    targets = list(earlier) if mode.transitive else [earlier[-1]]
    findings: list[Finding] = []
    for old_version, old in targets:
        for direction in mode.directions:
            findings += [f.with_versions(old_version, version) for f in compare(old, new, direction)]
    findings += reserved_findings(new, earlier, version=version)
    return CompatibilityReport(
        event_type,
        version,
        mode,
        tuple(findings),
        compared_with=tuple(v for v, _ in targets),
    )


def reserved_findings(
    new: Mapping[str, Any], earlier: Sequence[tuple[int, Mapping[str, Any]]], *, version: int = 0
) -> list[Finding]:
    """Return findings for fields of ``new`` that were removed earlier and come back with another type.

    A field present in the latest earlier version is not "coming back" and is
    left to the mode's rules.
    """
    if not earlier:
        return []
    latest = earlier[-1][1]
    in_latest = {f.path for f in walk_fields(latest)}
    history: dict[str, tuple[int, Mapping[str, Any], Any]] = {}
    for old_version, old in earlier[:-1]:
        for shape in walk_fields(old):
            history[shape.path] = (old_version, old, shape.node)
    out: list[Finding] = []
    for shape in walk_fields(new):
        if shape.path in in_latest or shape.path not in history:
            continue
        old_version, old_root, old_node = history[shape.path]
        before = canonical(old_node, old_root, keep_defaults=False)
        after = canonical(shape.node, new, keep_defaults=False)
        if _same(before, after):
            continue
        out.append(
            Finding(
                shape.path,
                Rule.RESERVED_FIELD_REUSED,
                "backward",
                describe(old_node, old_root),
                describe(shape.node, new),
                f"`{shape.path}` was removed after v{old_version}; its name is reserved and may only "
                "come back with the same type, because old data in the log still carries it",
                old_version=old_version,
                new_version=version,
            )
        )
    return out


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between two schema versions, and whom it breaks."""

    path: str
    rule: Rule
    old: str
    new: str
    breaks_backward: bool
    breaks_forward: bool
    details: tuple[str, ...] = field(default=())

    def render(self) -> str:
        """Render as a diff hunk with a verdict line."""
        broken = [d for d, b in (("backward", self.breaks_backward), ("forward", self.breaks_forward)) if b]
        verdict = "breaks " + " and ".join(broken) if broken else "compatible both ways"
        return "\n".join([f"@@ {self.path} @@ {self.rule} ({verdict})", f"- {self.old}", f"+ {self.new}"])


def diff_schemas(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Return every change from ``old`` to ``new`` that breaks readers in some direction, plus default changes."""
    merged: dict[tuple[str, Rule], Change] = {}
    for direction in ("backward", "forward"):
        for f in compare(old, new, direction):
            key = (f.path, f.rule)
            prior = merged.get(key)
            merged[key] = Change(
                f.path,
                f.rule,
                prior.old if prior else f.old,
                prior.new if prior else f.new,
                (prior.breaks_backward if prior else False) or direction == "backward",
                (prior.breaks_forward if prior else False) or direction == "forward",
                ((*prior.details, f.detail) if prior else (f.detail,)),
            )
    old_fields = {f.path: f for f in walk_fields(old)}
    for shape in walk_fields(new):
        before = old_fields.get(shape.path)
        if before is None or (before.has_default, before.default) == (shape.has_default, shape.default):
            continue
        if before.has_default and shape.has_default:
            merged[(shape.path, Rule.DEFAULT_CHANGED)] = Change(
                shape.path,
                Rule.DEFAULT_CHANGED,
                f"default {json.dumps(before.default)}",
                f"default {json.dumps(shape.default)}",
                False,
                False,
            )
    return sorted(merged.values(), key=lambda c: (c.path != ROOT, c.path, c.rule))
