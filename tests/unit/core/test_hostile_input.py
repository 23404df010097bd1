"""Hostile input to the codec and to derived ids: only DecodeError, and ids that never depend on the clock."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from choreograph import DecodeError, decode, derived_id
from choreograph.core.codec import MAX_SCHEMA_VERSION, from_binary

BASE: dict[str, Any] = {"id": "e1", "source": "s", "type": "t.placed", "specversion": "1.0", "data": {}}
BINARY = {"ce_id": "e1", "ce_source": "s", "ce_type": "t.placed", "ce_specversion": "1.0"}

BAD_VERSIONS: list[Any] = [
    "¹",  # a superscript digit: str.isdigit() says yes, int() says no
    "٣",  # an Arabic-Indic digit: int() would read it as 3
    "\uff12",  # a fullwidth digit
    "9" * 5000,  # past int()'s digit limit
    str(MAX_SCHEMA_VERSION + 1),
    "-1",
    "",
    " 1",
    "1_0",
]


@pytest.mark.parametrize("version", BAD_VERSIONS)
def test_a_schemaversion_that_is_not_a_small_ascii_number_is_a_decode_error(version: str) -> None:
    with pytest.raises(DecodeError, match="schemaversion"):
        decode(orjson.dumps({**BASE, "schemaversion": version}))
    with pytest.raises(DecodeError, match="schemaversion"):
        from_binary({**BINARY, "ce_schemaversion": version}, b"{}")


@pytest.mark.parametrize("version", [0, -1, True, False, 1.0, 2**31, 10**18, [1], {"v": 1}, 1e300])
def test_a_json_schemaversion_out_of_range_or_not_an_int_is_a_decode_error(version: Any) -> None:
    with pytest.raises(DecodeError, match="schemaversion"):
        decode(orjson.dumps({**BASE, "schemaversion": version}))


def test_good_versions_still_decode_in_both_modes() -> None:
    assert decode(orjson.dumps({**BASE, "schemaversion": 3})).schemaversion == 3
    assert from_binary({**BINARY, "ce_schemaversion": "12"}, b"{}").schemaversion == 12
    assert decode(orjson.dumps({**BASE, "schemaversion": MAX_SCHEMA_VERSION})).schemaversion == MAX_SCHEMA_VERSION


def test_a_huge_integer_anywhere_is_a_decode_error_or_a_float_never_an_overflow() -> None:
    envelope = decode(orjson.dumps(BASE)[:-1] + b',"x":' + b"9" * 300 + b"}")
    assert isinstance(envelope.extensions["x"], float)  # orjson reads past-64-bit numbers as floats
    with pytest.raises(DecodeError, match="not valid JSON"):  # ... and past a double's range, refuses them
        decode(orjson.dumps(BASE)[:-1] + b',"x":' + b"9" * 5000 + b"}")
    with pytest.raises(DecodeError, match="schemaversion"):
        decode(orjson.dumps(BASE)[:-1] + b',"schemaversion":' + b"9" * 300 + b"}")


@pytest.mark.parametrize("contenttype", [1, ["a"], {"a": 1}, True])
def test_a_datacontenttype_that_is_not_a_string_is_a_decode_error(contenttype: Any) -> None:
    with pytest.raises(DecodeError, match="datacontenttype"):
        decode(orjson.dumps({**BASE, "datacontenttype": contenttype}))


@pytest.mark.parametrize(
    "headers",
    [
        {**BINARY, "ce_ext": 5},  # a value that is not a string
        {**BINARY, 7: "x"},  # a name that is not a string
        {**BINARY, "content-type": b"application/json"},
    ],
)
def test_binary_headers_of_odd_types_are_a_decode_error(headers: dict[Any, Any]) -> None:
    with pytest.raises(DecodeError):
        from_binary(headers, b"{}")


@pytest.mark.parametrize("raw", [None, "text", 12, ["list"]])
def test_a_value_that_is_not_bytes_is_a_decode_error(raw: Any) -> None:
    with pytest.raises(DecodeError, match="expected bytes"):
        decode(raw)
    with pytest.raises(DecodeError, match="expected bytes"):
        from_binary(BINARY, raw)


def test_binary_headers_count_towards_the_size_limit() -> None:
    with pytest.raises(DecodeError, match="over the 100-byte limit"):
        from_binary({**BINARY, "ce_big": "x" * 200}, b"{}", max_size=100)


@settings(max_examples=200, deadline=None)
@given(parent=st.text(), scope=st.text(min_size=1), position=st.integers(min_value=0, max_value=10_000))
def test_derived_id_is_a_deterministic_uuid_for_any_parent(parent: str, scope: str, position: int) -> None:
    first = derived_id(parent, scope, position)
    assert derived_id(parent, scope, position) == first
    parsed = uuid.UUID(first)
    assert str(parsed) == first
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_derived_id_of_a_non_v7_parent_is_stable_across_runs() -> None:
    # Pinned values: a worker restarted tomorrow (another process, another clock) emits these same ids.
    assert derived_id("order-1", "shop.reserve", 0) == "ce738202-77a6-7fdb-9853-e6ed9a72acee"
    assert derived_id("\ud800x", "g", 1) == "b5a956d7-1cd1-73f9-86bd-3bde4a96785d"
    assert derived_id("order-1", "shop.reserve", 1) != derived_id("order-1", "shop.reserve", 0)
