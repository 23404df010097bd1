"""Fuzz the SQLite row translation: any row another program could write is a delivery, never an exception."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from choreograph.brokers.sqlite.log import translate_row
from choreograph.core.broker import Delivery
from tests.fuzz.budget import fuzz_settings

_cells = (
    st.none()
    | st.text(max_size=12)
    | st.binary(max_size=12)
    | st.integers()
    | st.floats()
    | st.sampled_from(['{"a":"b"}', '{"a":1}', "[]", '{"a":"\\ud800"}', "{", b"\xff"])
)


@fuzz_settings(0.05)  # 200 inputs in the normal run; 50,000 under HYPOTHESIS_PROFILE=fuzz
@given(key=_cells, value=_cells, headers=_cells, ts=_cells)
def test_any_row_translates_to_a_delivery(key: object, value: object, headers: object, ts: object) -> None:
    delivery = translate_row("t", 0, 5, key, value, headers, ts)
    assert isinstance(delivery, Delivery)
    assert isinstance(delivery.value, bytes)
    assert delivery.key is None or isinstance(delivery.key, str)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in delivery.headers.items())
    assert isinstance(delivery.timestamp, float)
    "".join((*delivery.headers, *delivery.headers.values())).encode()  # storable again as UTF-8
    (delivery.key or "").encode()


def test_what_the_log_writes_has_no_fault() -> None:
    delivery = translate_row("t", 1, 7, "k\u00e9", b"v", '{"h":"\u2713"}', 2.5)
    assert delivery == Delivery("t", 1, 7, b"v", "k\u00e9", {"h": "\u2713"}, 2.5)
    assert translate_row("t", 1, 8, None, b"", None, 1.0).fault is None
    assert translate_row("t", 1, 9, b"\xc3\x28", b"", None, 1.0).fault == "key is not UTF-8"
