"""Every compatibility mode x change kind x open/closed content model, and transitive chains."""

from __future__ import annotations

from typing import Any

import pytest

from choreograph.schema import Compatibility, Rule, check_compatibility, diff_schemas

INT: dict[str, Any] = {"type": "integer"}
NUM: dict[str, Any] = {"type": "number"}
STR: dict[str, Any] = {"type": "string"}


def obj(props: dict[str, Any], required: tuple[str, ...] = ("a",), *, closed: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props, "required": list(required)}
    if closed:
        schema["additionalProperties"] = False
    return schema


def enum(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


# kind -> (old fields, old required, new fields, new required, expected per content model)
# expected: {"closed"|"open": (path, backward rule or None, forward rule or None)}
def _case(
    old: dict[str, Any],
    new: dict[str, Any],
    closed: tuple[Rule | None, Rule | None],
    open_: tuple[Rule | None, Rule | None] | None = None,
    *,
    old_req: tuple[str, ...] = ("a",),
    new_req: tuple[str, ...] = ("a",),
    path: str = "b",
) -> dict[str, Any]:
    return {
        "old": old,
        "new": new,
        "old_req": old_req,
        "new_req": new_req,
        "path": path,
        "closed": closed,
        "open": open_ if open_ is not None else closed,
    }


def nested(field: dict[str, Any], *, closed: bool) -> dict[str, Any]:
    return obj({"c": field}, ("c",), closed=closed)


CASES: dict[str, dict[str, Any]] = {
    "add optional field": _case({"a": STR}, {"a": STR, "b": INT}, (None, Rule.FIELD_ADDED), (Rule.FIELD_ADDED, None)),
    "add optional field with default": _case(
        {"a": STR},
        {"a": STR, "b": {**INT, "default": 0}},
        (None, Rule.FIELD_ADDED),
        (Rule.FIELD_ADDED, None),
    ),
    "add required field": _case(
        {"a": STR},
        {"a": STR, "b": INT},
        (Rule.REQUIRED_FIELD_ADDED, Rule.REQUIRED_FIELD_ADDED),
        (Rule.REQUIRED_FIELD_ADDED, None),
        new_req=("a", "b"),
    ),
    "remove optional field": _case(
        {"a": STR, "b": INT}, {"a": STR}, (Rule.FIELD_REMOVED, None), (None, Rule.FIELD_REMOVED)
    ),
    "remove required field": _case(
        {"a": STR, "b": INT},
        {"a": STR},
        (Rule.REQUIRED_FIELD_REMOVED, Rule.REQUIRED_FIELD_REMOVED),
        (None, Rule.REQUIRED_FIELD_REMOVED),
        old_req=("a", "b"),
    ),
    "make field required": _case(
        {"a": STR, "b": INT}, {"a": STR, "b": INT}, (Rule.FIELD_MADE_REQUIRED, None), new_req=("a", "b")
    ),
    "make field optional (add a default)": _case(
        {"a": STR, "b": INT},
        {"a": STR, "b": {**INT, "default": 0}},
        (None, Rule.FIELD_MADE_OPTIONAL),
        old_req=("a", "b"),
    ),
    "change a default": _case(
        {"a": STR, "b": {**INT, "default": 0}}, {"a": STR, "b": {**INT, "default": 1}}, (None, None)
    ),
    "widen integer to number": _case({"a": STR, "b": INT}, {"a": STR, "b": NUM}, (None, Rule.TYPE_WIDENED)),
    "narrow number to integer": _case({"a": STR, "b": NUM}, {"a": STR, "b": INT}, (Rule.TYPE_NARROWED, None)),
    "change string to integer": _case(
        {"a": STR, "b": STR}, {"a": STR, "b": INT}, (Rule.TYPE_CHANGED, Rule.TYPE_CHANGED)
    ),
    "make nullable": _case(
        {"a": STR, "b": STR},
        {"a": STR, "b": {"anyOf": [STR, {"type": "null"}]}},
        (None, Rule.TYPE_WIDENED),
    ),
    "drop nullable": _case(
        {"a": STR, "b": {"anyOf": [STR, {"type": "null"}]}},
        {"a": STR, "b": STR},
        (Rule.TYPE_NARROWED, None),
    ),
    "add enum value": _case(
        {"a": STR, "b": enum("x", "y")}, {"a": STR, "b": enum("x", "y", "z")}, (None, Rule.ENUM_VALUES_ADDED)
    ),
    "remove enum value": _case(
        {"a": STR, "b": enum("x", "y")}, {"a": STR, "b": enum("x")}, (Rule.ENUM_VALUES_REMOVED, None)
    ),
    "swap enum values": _case(
        {"a": STR, "b": enum("x", "y")},
        {"a": STR, "b": enum("x", "z")},
        (Rule.ENUM_VALUES_CHANGED, Rule.ENUM_VALUES_CHANGED),
    ),
    "tighten a bound": _case(
        {"a": STR, "b": INT}, {"a": STR, "b": {**INT, "minimum": 0}}, (Rule.CONSTRAINT_TIGHTENED, None)
    ),
    "relax a bound": _case(
        {"a": STR, "b": {**INT, "maximum": 9}}, {"a": STR, "b": INT}, (None, Rule.CONSTRAINT_RELAXED)
    ),
    "widen array items": _case(
        {"a": STR, "b": {"type": "array", "items": INT}},
        {"a": STR, "b": {"type": "array", "items": NUM}},
        (None, Rule.TYPE_WIDENED),
        path="b[]",
    ),
    "narrow array items": _case(
        {"a": STR, "b": {"type": "array", "items": NUM}},
        {"a": STR, "b": {"type": "array", "items": INT}},
        (Rule.TYPE_NARROWED, None),
        path="b[]",
    ),
    "widen map values": _case(
        {"a": STR, "b": {"type": "object", "additionalProperties": INT}},
        {"a": STR, "b": {"type": "object", "additionalProperties": NUM}},
        (None, Rule.TYPE_WIDENED),
        path="b{*}",
    ),
}

NESTED: dict[str, tuple[dict[str, Any], dict[str, Any], tuple[Rule | None, Rule | None]]] = {
    "widen a nested field": (INT, NUM, (None, Rule.TYPE_WIDENED)),
    "narrow a nested field": (NUM, INT, (Rule.TYPE_NARROWED, None)),
    "change a nested field": (STR, INT, (Rule.TYPE_CHANGED, Rule.TYPE_CHANGED)),
}

MODES = list(Compatibility)


def expected_rules(mode: Compatibility, path: str, cell: tuple[Rule | None, Rule | None]) -> set[tuple[str, str]]:
    backward, forward = cell
    out = set()
    if "backward" in mode.directions and backward is not None:
        out.add((path, str(backward)))
    if "forward" in mode.directions and forward is not None:
        out.add((path, str(forward)))
    return out


def found(new: dict[str, Any], old: dict[str, Any], mode: Compatibility) -> set[tuple[str, str]]:
    report = check_compatibility(new, [(1, old)], mode, event_type="t", version=2)
    return {(f.path, str(f.rule)) for f in report.findings}


@pytest.mark.parametrize("mode", MODES, ids=str)
@pytest.mark.parametrize("content", ["closed", "open"])
@pytest.mark.parametrize("kind", list(CASES))
def test_change_kind_under_mode(kind: str, content: str, mode: Compatibility) -> None:
    # Given an old and a new version differing by one kind of change
    case = CASES[kind]
    closed = content == "closed"
    old = obj(case["old"], case["old_req"], closed=closed)
    new = obj(case["new"], case["new_req"], closed=closed)
    # When checked under the mode
    result = found(new, old, mode)
    # Then exactly the rule of the table fires (or nothing: compatible)
    assert result == expected_rules(mode, case["path"], case[content])


@pytest.mark.parametrize("mode", MODES, ids=str)
@pytest.mark.parametrize("content", ["closed", "open"])
@pytest.mark.parametrize("kind", list(NESTED))
def test_nested_object_change_under_mode(kind: str, content: str, mode: Compatibility) -> None:
    closed = content == "closed"
    before, after, cell = NESTED[kind]
    old = obj({"a": STR, "b": nested(before, closed=closed)}, closed=closed)
    new = obj({"a": STR, "b": nested(after, closed=closed)}, closed=closed)
    assert found(new, old, mode) == expected_rules(mode, "b.c", cell)


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_closing_an_open_object(mode: Compatibility) -> None:
    old = obj({"a": STR}, closed=False)
    new = obj({"a": STR}, closed=True)
    assert found(new, old, mode) == expected_rules(mode, "(root)", (Rule.CONTENT_MODEL_CLOSED, None))


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_opening_a_closed_object(mode: Compatibility) -> None:
    old = obj({"a": STR}, closed=True)
    new = obj({"a": STR}, closed=False)
    assert found(new, old, mode) == expected_rules(mode, "(root)", (None, Rule.CONTENT_MODEL_OPENED))


def test_refs_and_nested_defs_are_resolved() -> None:
    # Given pydantic-style $defs and a nullable reference
    def schema(zip_type: dict[str, Any]) -> dict[str, Any]:
        return {
            "$defs": {"Address": obj({"zip": zip_type}, ("zip",), closed=True)},
            **obj({"a": STR, "b": {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}]}}, closed=True),
        }

    # When the referenced model narrows a field
    result = found(schema(INT), schema(NUM), Compatibility.FULL)
    # Then the finding names the path through the reference
    assert result == {("b.zip", "type-narrowed")}


def test_recursive_definitions_terminate() -> None:
    node = {"$defs": {"Node": obj({"a": STR, "next": {"$ref": "#/$defs/Node"}}, closed=True)}}
    schema = {**node, "$ref": "#/$defs/Node"}
    assert found(schema, schema, Compatibility.FULL) == set()


# -- transitive chains v1 -> v2 -> v3 ------------------------------------------------------


def history(*fields: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    return [(i + 1, obj({"a": STR, "b": f}, closed=True)) for i, f in enumerate(fields)]


@pytest.mark.parametrize(
    ("mode", "chain", "new", "expected"),
    [
        # v2 was registered under NONE (string -> integer); v3 widens to number
        (Compatibility.BACKWARD, (STR, INT), NUM, set()),
        (Compatibility.BACKWARD_TRANSITIVE, (STR, INT), NUM, {(1, "b", "type-changed")}),
        # v2 widened integer -> number under BACKWARD; the type is now FORWARD
        (Compatibility.FORWARD, (INT, NUM), NUM, set()),
        (Compatibility.FORWARD_TRANSITIVE, (INT, NUM), NUM, {(1, "b", "type-widened")}),
        (Compatibility.FULL, (STR, INT), INT, set()),
        (Compatibility.FULL_TRANSITIVE, (STR, INT), INT, {(1, "b", "type-changed")}),
        (Compatibility.NONE, (STR, INT), {"type": "boolean"}, set()),
    ],
    ids=str,
)
def test_transitive_chain(
    mode: Compatibility, chain: tuple[dict[str, Any], ...], new: dict[str, Any], expected: set[tuple[int, str, str]]
) -> None:
    # Given v1 and v2 already registered, when v3 is checked
    earlier = history(*chain)
    report = check_compatibility(obj({"a": STR, "b": new}, closed=True), earlier, mode, event_type="t", version=3)
    # Then transitive modes compare with every earlier version, others with the latest only
    assert {(f.old_version, f.path, str(f.rule)) for f in report.findings} == expected
    assert report.compared_with == ((1, 2) if mode.transitive else (() if mode is Compatibility.NONE else (2,)))
    assert all(f.new_version == 3 for f in report.findings)


def test_transitive_full_reports_both_directions_per_version() -> None:
    earlier = history(INT, NUM)
    report = check_compatibility(
        obj({"a": STR, "b": STR}, closed=True), earlier, Compatibility.FULL_TRANSITIVE, version=3
    )
    pairs = {(f.old_version, f.direction) for f in report.findings}
    assert pairs == {(1, "backward"), (1, "forward"), (2, "backward"), (2, "forward")}


# -- reserved names ------------------------------------------------------------------------


def test_removed_field_cannot_return_with_another_type() -> None:
    # Given v1 had b: integer and v2 removed it (the object is closed)
    earlier = [(1, obj({"a": STR, "b": INT}, closed=True)), (2, obj({"a": STR}, closed=True))]
    # When v3 brings b back as a string (an optional field added to a closed object is BACKWARD-safe)
    report = check_compatibility(obj({"a": STR, "b": STR}, closed=True), earlier, Compatibility.BACKWARD, version=3)
    # Then only the reserved-name rule fires, naming v1's type
    assert [(f.path, f.rule, f.old, f.new, f.old_version) for f in report.findings] == [
        ("b", Rule.RESERVED_FIELD_REUSED, "integer", "string", 1)
    ]


def test_removed_field_may_return_with_the_same_type() -> None:
    earlier = [(1, obj({"a": STR, "b": INT}, closed=True)), (2, obj({"a": STR}, closed=True))]
    new = obj({"a": STR, "b": {**INT, "title": "B", "default": 3}}, closed=True)
    assert check_compatibility(new, earlier, Compatibility.BACKWARD, version=3).compatible


def test_reserved_names_are_not_checked_under_none() -> None:
    earlier = [(1, obj({"a": STR, "b": INT}, closed=True)), (2, obj({"a": STR}, closed=True))]
    report = check_compatibility(obj({"a": STR, "b": STR}, closed=True), earlier, Compatibility.NONE, version=3)
    assert report.compatible


# -- reports and diffs ---------------------------------------------------------------------


def test_report_renders_a_diff_naming_path_rule_and_versions() -> None:
    old = obj({"a": STR, "b": INT}, closed=True)
    new = obj({"a": STR, "b": STR}, closed=True)
    report = check_compatibility(new, [(1, old)], Compatibility.BACKWARD, event_type="shop.x", version=2)
    text = report.render()
    assert "shop.x v2: INCOMPATIBLE with v1 under BACKWARD" in text
    assert "@@ b @@ type-changed (backward: consumers on v2 reading data written with v1)" in text
    assert "- v1: integer" in text
    assert "+ v2: string" in text


def test_diff_lists_every_change_with_whom_it_breaks() -> None:
    old = obj({"a": STR, "b": {**INT, "default": 0}, "c": INT}, closed=True)
    new = obj({"a": STR, "b": {**INT, "default": 1}, "c": NUM, "d": STR}, closed=True)
    changes = {(c.path, str(c.rule)): (c.breaks_backward, c.breaks_forward) for c in diff_schemas(old, new)}
    assert changes == {
        ("b", "default-changed"): (False, False),
        ("c", "type-widened"): (False, True),
        ("d", "field-added"): (False, True),
    }


def test_parse_mode_accepts_any_case_and_rejects_unknown() -> None:
    assert Compatibility.parse("full-transitive") is Compatibility.FULL_TRANSITIVE
    with pytest.raises(ValueError, match="use one of BACKWARD"):
        Compatibility.parse("sideways")
