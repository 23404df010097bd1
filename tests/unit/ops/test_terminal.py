"""CLI output helpers: JSON lines that any script can read back, safe on any terminal."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from choreograph.ops.terminal import json_block, json_line, one_line

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=1000)
@given(JSON_VALUES)
def test_a_json_line_is_one_printable_line_that_reads_back_the_same(doc: Any) -> None:
    line = json_line(doc)
    assert line.isprintable()
    assert "\n" not in line and "\x1b" not in line and "\u202e" not in line
    assert json.loads(line) == doc


@settings(max_examples=1000)
@given(JSON_VALUES)
def test_one_line_keeps_a_json_value_valid(doc: Any) -> None:
    # Given a JSON value written by any producer, pretty-printed and with raw non-ASCII
    raw = json.dumps(doc, indent=2, ensure_ascii=False)
    line = one_line(raw)
    assert "\n" not in line and "\x1b" not in line
    assert json.loads(line) == doc


def test_bytes_become_base64() -> None:
    assert json.loads(json_line({"value": b"\xff\x00"})) == {"value": {"base64": "/wA="}}


@settings(max_examples=500)
@given(JSON_VALUES)
def test_a_json_block_reads_back_the_same_and_hides_nothing(doc: Any) -> None:
    block = json_block(doc)
    assert all(line.isprintable() for line in block.split("\n"))
    assert json.loads(block) == doc
