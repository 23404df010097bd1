"""Fuzz the codec: for any bytes, JSON document, binary headers and body: an envelope or DecodeError.

A DecodeError out of the codec's safety net (an exception its checks did not
anticipate, turned into DecodeError at the door) fails these tests too: it
means a check is missing.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import example, given
from hypothesis import strategies as st

from choreograph.core import codec
from choreograph.core import headers as h
from choreograph.core.envelope import Envelope
from choreograph.core.errors import DecodeError, EncodeError
from tests.fuzz.budget import fed, fuzz_settings

ATTRIBUTES = sorted(codec._KNOWN | {"signature", "x-ext", "ext"})
SAFETY_NET = "message could not be decoded:"

json_scalars = st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=20)
json_scalars |= st.integers(min_value=-(2**63), max_value=2**64 - 1)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
versions = (
    st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.booleans()
    | st.floats()
    | st.text(alphabet=st.characters(categories=["Nd", "No"]), max_size=12)  # digits of every script
    | st.text(alphabet="0123456789\u00b9\u00b2\u0663\u0660\u09e9\uff11\U0001d7ce", min_size=1, max_size=12)
    | st.text(max_size=12)
    | st.from_regex(r"\A[0-9]{1,40}\Z")
    | st.integers(min_value=4290, max_value=5000).map(lambda n: "9" * n)  # past int()'s digit limit
)


def valid_doc(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": draw(st.text(min_size=1, max_size=40)),
        "source": draw(st.text(min_size=1, max_size=20)),
        "type": draw(st.text(min_size=1, max_size=20)),
        "data": draw(json_values),
    }


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """Envelope-like JSON objects: a valid core, then attributes replaced, added or removed at random."""
    doc = valid_doc(draw) if draw(st.booleans()) else {}
    if draw(st.booleans()):
        doc[h.SCHEMA_VERSION] = draw(versions)
    for name in draw(st.lists(st.sampled_from(ATTRIBUTES), max_size=6)):
        if name == h.SCHEMA_VERSION:
            doc[name] = draw(versions)
        elif draw(st.booleans()):
            doc[name] = draw(st.text(max_size=30))
        else:
            doc[name] = draw(json_values)
    for name in draw(st.lists(st.sampled_from(sorted(doc) or ["id"]), max_size=2)):
        doc.pop(name, None)
    return doc


def expect_envelope_or_decode_error(call: Any) -> Envelope | None:
    """Return what ``call`` decoded, or None for a DecodeError that a check raised (not the safety net)."""
    try:
        return call()  # type: ignore[no-any-return]
    except DecodeError as exc:
        error = exc
    assert not str(error).startswith(SAFETY_NET), f"a check is missing: {error}"
    return None


@fuzz_settings(0.25)
@given(raw=st.binary(max_size=300))
@example(raw=b'{"id":"e","source":"s","type":"t","specversion":"1.0","schemaversion":"\xc2\xb9"}')
@example(raw=b'{"id":"e","source":"s","type":"t","specversion":"1.0","schemaversion":' + b"9" * 400 + b"}")
@example(raw=b"[" * 2000)
def test_any_bytes_decode_to_an_envelope_or_a_decode_error(raw: bytes) -> None:
    fed("codec.decode bytes")
    expect_envelope_or_decode_error(lambda: codec.decode(raw))


@fuzz_settings(0.3)
@given(doc=documents())
def test_any_structured_document_decodes_to_an_envelope_that_round_trips_or_a_decode_error(doc: dict[str, Any]) -> None:
    fed("codec.decode documents")
    raw = orjson.dumps(doc)
    envelope = expect_envelope_or_decode_error(lambda: codec.decode(raw))
    if envelope is None:
        return
    assert isinstance(envelope.id, str) and envelope.id and isinstance(envelope.type, str) and envelope.type
    version = envelope.schemaversion
    assert version is None or (type(version) is int and 1 <= version <= codec.MAX_SCHEMA_VERSION)
    try:
        again = codec.encode(envelope)
    except EncodeError:
        return
    assert codec.decode(again) == envelope


header_names = st.sampled_from([f"{h.BINARY_PREFIX}{name}" for name in ATTRIBUTES] + [h.CONTENT_TYPE_HEADER]) | st.text(
    max_size=12
)
header_values = st.text(max_size=40) | json_values.map(lambda v: orjson.dumps(v).decode()) | versions.map(str)


@st.composite
def binary_messages(draw: st.DrawFn) -> tuple[dict[str, str], bytes]:
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        headers = {f"{h.BINARY_PREFIX}{k}": str(v) for k, v in valid_doc(draw).items() if k != "data"}
    headers.update(draw(st.dictionaries(header_names, header_values, max_size=6)))
    body = draw(st.binary(max_size=60) | json_values.map(orjson.dumps))
    return headers, body


@fuzz_settings(0.25)
@given(message=binary_messages())
@example(
    message=({"ce_id": "e", "ce_source": "s", "ce_type": "t", "ce_specversion": "1.0", "ce_schemaversion": "٣"}, b"")
)
def test_any_binary_headers_and_body_rebuild_an_envelope_or_a_decode_error(
    message: tuple[dict[str, str], bytes],
) -> None:
    fed("codec.from_binary")
    headers, body = message
    envelope = expect_envelope_or_decode_error(lambda: codec.from_binary(headers, body))
    if envelope is not None:
        version = envelope.schemaversion
        assert version is None or (type(version) is int and 1 <= version <= codec.MAX_SCHEMA_VERSION)
        assert envelope.datacontenttype is None or isinstance(envelope.datacontenttype, str)
