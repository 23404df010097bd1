"""Fuzz the Redis stream entry translation: any entry is a delivery, never an exception (no server needed)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from choreograph.brokers.redis.keys import entry_id, record_offset
from choreograph.brokers.redis.records import encode_headers, flat_entry_deliveries, translate_entry
from choreograph.core.broker import Delivery
from tests.fuzz.budget import fuzz_settings

_names = st.sampled_from([b"v", b"t", b"k", b"h"]) | st.binary(max_size=4)
_values = st.binary(max_size=64) | st.sampled_from([b"1.5", b"nan", b"{}", b'{"a":"b"}', b'{"a":1}', b"\xff"])
_ids = (
    st.builds(lambda ms, seq: f"{ms}-{seq}".encode(), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
    | st.binary(max_size=12)
    | st.text(max_size=12).map(str.encode)
)
_flat = st.lists(st.tuples(_names, _values), max_size=6).map(lambda pairs: [x for pair in pairs for x in pair])


@fuzz_settings(0.05)  # 200 inputs in the normal run; 50,000 under HYPOTHESIS_PROFILE=fuzz
@given(stream_id=_ids, flat=_flat | st.lists(_values, max_size=5))
def test_any_entry_translates_to_a_delivery(stream_id: bytes, flat: list[bytes]) -> None:
    for delivery in (
        translate_entry("t", 0, stream_id, flat),
        *flat_entry_deliveries("t", 0, [(stream_id, flat)]),
    ):
        assert isinstance(delivery, Delivery)
        assert isinstance(delivery.value, bytes)
        assert delivery.key is None or isinstance(delivery.key, str)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in delivery.headers.items())
        # whatever it is, it can be stored and shown: key and headers encode as UTF-8
        (delivery.key or "").encode()
        encode_headers(delivery.headers)
        if delivery.fault is None:
            assert entry_id(delivery.offset).encode() == stream_id  # settled under the id it was read with
        else:
            assert delivery.fault


@settings(max_examples=200)
@given(
    offset=st.integers(0, 2**62),
    value=st.binary(max_size=32),
    key=st.none() | st.text(max_size=8),
    headers=st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)
def test_what_the_publish_script_writes_translates_without_a_fault(
    offset: int, value: bytes, key: str | None, headers: dict[str, str]
) -> None:
    flat = [b"v", value, b"t", b"12.5"]
    if key is not None:
        flat += [b"k", key.encode("utf-8", "surrogatepass")]
    if headers:
        flat += [b"h", encode_headers(headers)]
    sid = entry_id(offset).encode()
    (delivery,) = flat_entry_deliveries("t", 1, [(sid, flat)])
    has_surrogate = any(0xD800 <= ord(c) <= 0xDFFF for c in (key or "") + "".join(headers) + "".join(headers.values()))
    if has_surrogate:
        return  # not something a str from our callers can hold after encode(); covered by the fuzz above
    assert delivery == Delivery("t", 1, offset, value, key, headers, 12.5)


@given(ms=st.integers(0, 2**64 - 1), seq=st.integers(0, 2**64 - 1))
def test_every_stream_id_has_an_offset_that_maps_back_to_it(ms: int, seq: int) -> None:
    sid = f"{ms}-{seq}"
    if sid == "0-0":
        return  # not an id Redis accepts
    assert entry_id(record_offset(sid)) == sid
