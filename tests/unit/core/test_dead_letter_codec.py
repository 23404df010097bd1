"""core.dead_letter_codec: one encoding round-trips every dead letter, whole or in chunks; old entries stay readable."""

from __future__ import annotations

import base64
import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from choreograph.core import dead_letter_codec as codec
from choreograph.core.broker import DeadLetter
from choreograph.core.enums import DeadLetterReason, DeadLetterStatus

_text = st.text(max_size=40)
_optional = st.one_of(st.none(), _text)
_letters = st.builds(
    DeadLetter,
    id=_text,
    topic=_text,
    group=_text,
    handler=_text,
    partition=st.integers(0, 10_000),
    offset=st.integers(-1, 2**62),
    key=_optional,
    value=st.binary(max_size=300),
    headers=st.dictionaries(_text, _text, max_size=4),
    event_id=_optional,
    event_type=_optional,
    reason=st.sampled_from(list(DeadLetterReason)),
    error_type=_text,
    error_message=st.text(max_size=200),
    stack=st.text(max_size=200),
    attempts=st.integers(0, 1000),
    first_failure=st.floats(0, 2e9),
    last_failure=st.floats(0, 2e9),
    status=st.sampled_from(list(DeadLetterStatus)),
    predecessor=_optional,
)


@given(_letters)
def test_encode_then_decode_gives_the_letter_back(letter: DeadLetter) -> None:
    assert codec.decode(codec.encode(letter)) == (letter, 0)


@given(_letters, st.integers(-1, 400))
def test_split_then_join_gives_the_letter_back(letter: DeadLetter, max_entry: int) -> None:
    entry, chunks = codec.split(letter, max_entry)
    decoded, count = codec.decode(entry)
    assert count == len(chunks)
    if chunks:
        assert all(len(chunk) <= max_entry for chunk in chunks)
        assert decoded.value == b""
        decoded = codec.join(decoded, chunks)
    else:
        assert max_entry <= 0 or len(entry) <= max_entry
    assert decoded == letter


def test_split_cuts_the_stack_and_message_of_a_chunked_letter_to_text_cap() -> None:
    letter = _letter(value=b"x" * 1000, stack="s" * 500, error_message="m" * 500)
    entry, chunks = codec.split(letter, 400, text_cap=10)
    decoded, count = codec.decode(entry)
    assert count == len(chunks) == 3
    assert (decoded.stack, decoded.error_message) == ("s" * 10, "m" * 10)


@given(_letters)
def test_entries_written_before_the_shared_encoding_stay_readable(letter: DeadLetter) -> None:
    # NATS wrote the value base64, Kafka as latin-1 text; neither wrote value_encoding.
    doc = dataclasses.asdict(letter)
    doc["headers"] = dict(letter.headers)
    nats_doc = {**doc, "value": base64.b64encode(letter.value).decode()}
    kafka_doc = {**doc, "value": letter.value.decode("latin-1")}
    assert codec.decode(json.dumps(nats_doc, ensure_ascii=False).encode()) == (letter, 0)
    kafka_raw = json.dumps({**kafka_doc, "chunks": 2}, ensure_ascii=False).encode()
    assert codec.decode(kafka_raw, legacy_value_encoding="latin-1") == (letter, 2)


@pytest.mark.parametrize(
    "raw",
    [b"", b"[]", b"{}", b'{"value": 1}', b"\xff", b'{"value": "!!", "value_encoding": "base64"}', b'{"value": ""}'],
)
def test_bytes_that_are_not_an_entry_raise_decode_error(raw: bytes) -> None:
    with pytest.raises(codec.DeadLetterDecodeError):
        codec.decode(raw)


def test_unknown_value_encoding_and_fields_are_refused() -> None:
    doc = json.loads(codec.encode(_letter()))
    with pytest.raises(codec.DeadLetterDecodeError, match="value_encoding"):
        codec.decode(json.dumps({**doc, "value_encoding": "rot13"}))
    with pytest.raises(codec.DeadLetterDecodeError, match="unknown fields"):
        codec.decode(json.dumps({**doc, "colour": "red"}))


def _letter(**changes: object) -> DeadLetter:
    letter = DeadLetter(
        "id", "t", "g", "h", 0, 1, None, b"v", {}, None, None, "error", "E", "msg", "stack", 1, 1.0, 2.0
    )
    return dataclasses.replace(letter, **changes)  # type: ignore[arg-type]
