"""Envelope encoding: structured and binary CloudEvents, and malformed input."""

from __future__ import annotations

import orjson
import pytest

from choreograph import DecodeError, EncodeError, Envelope, Event, decode, encode
from choreograph.core.codec import from_binary, to_binary


class Greeted(Event, type="test.greeted", version=2):
    name: str
    count: int


def full_envelope() -> Envelope:
    return Envelope(
        id="0190f6d8-0000-7000-8000-000000000001",
        source="greeter",
        type="test.greeted",
        data={"name": "Zoë 🌍", "count": 3},
        time="2026-11-26T10:00:00.000001Z",
        subject="people/zoe",
        dataschema="urn:schema:test.greeted:2",
        correlationid="corr-1",
        causationid="cause-1",
        partitionkey="zoe",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        tracestate="vendor=1",
        schemaversion=2,
        extensions={"signature": "abc", "customext": 7},
    )


def test_structured_round_trip_keeps_every_attribute() -> None:
    original = full_envelope()
    assert decode(encode(original)) == original


def test_binary_round_trip_keeps_every_attribute() -> None:
    original = full_envelope()
    headers, body = to_binary(original)
    assert headers["ce_id"] == original.id
    assert from_binary(headers, body) == original


def test_encoded_form_is_cloudevents_json() -> None:
    doc = orjson.loads(encode(full_envelope()))
    assert doc["specversion"] == "1.0"
    assert doc["correlationid"] == "corr-1"
    assert doc["data"] == {"name": "Zoë 🌍", "count": 3}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe not json", "not valid JSON"),
        (b"[1, 2]", "expected a CloudEvents object"),
        (b'{"specversion": "1.0", "source": "s", "type": "t"}', "'id'"),
        (b'{"specversion": "0.3", "id": "1", "source": "s", "type": "t"}', "specversion"),
        (b'{"specversion": "1.0", "id": "1", "source": "s", "type": "t", "schemaversion": "x"}', "schemaversion"),
        (b'{"specversion": "1.0", "id": "1", "source": "s", "type": "t", "subject": 5}', "subject"),
    ],
)
def test_malformed_bytes_raise_decode_error_naming_the_problem(raw: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode(raw)


def test_size_limit_applies_both_ways() -> None:
    big = full_envelope().replace(data={"blob": "x" * 2000})
    with pytest.raises(EncodeError, match="over the 1000-byte limit"):
        encode(big, max_size=1000)
    with pytest.raises(DecodeError, match="over the 1000-byte limit"):
        decode(encode(big), max_size=1000)


def test_for_event_starts_a_new_correlation() -> None:
    env = Envelope.for_event(Greeted(name="a", count=1), source="svc", key="k")
    assert env.correlationid == env.id
    assert env.causationid is None
    assert env.type == "test.greeted"
    assert env.schemaversion == 2
    assert env.partitionkey == "k"
