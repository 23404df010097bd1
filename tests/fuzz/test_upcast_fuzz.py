"""Fuzz the upcaster path: any payload of any version reads as the current event or raises SchemaError.

The upcasters are the kind people write: they index fields, convert types and
return what they built, and so raise on payloads they did not expect. Whatever
they raise, the consumer's read path (``SchemaGuard.incoming``, as the runtime
calls it) turns it into a SchemaError — an UpcastError naming the step — that
dead-letters the event with reason ``schema``; never another exception.
"""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from choreograph import Event
from choreograph.schema.errors import SchemaError, UpcastError
from choreograph.schema.registry import SchemaRegistry
from choreograph.schema.upcast import Upcasters
from choreograph.schema.validation import SchemaGuard
from tests.fuzz.budget import fed, fuzz_settings
from tests.fuzz.test_codec_fuzz import json_values


class OrderV4(Event, type="fz.order", version=4):
    order_id: str
    total_cents: int
    currency: str = "EUR"


upcasters = Upcasters()


@upcasters.step("fz.order", 1, 2)
def rename(data: dict[str, Any]) -> dict[str, Any]:
    data["order_id"] = data.pop("id")
    return data


@upcasters.step("fz.order", 2, 3)
def to_cents(data: dict[str, Any]) -> dict[str, Any]:
    return {"order_id": data["order_id"], "total_cents": round(float(data["total"]) * 100)}


@upcasters.step("fz.order", 3, 4)
def maybe_not_a_dict(data: dict[str, Any]) -> Any:
    return data if "total_cents" in data else [data]  # a step returning the wrong shape: SchemaError


guard = SchemaGuard(SchemaRegistry(None), register=True, upcasters=upcasters)

payloads = (
    st.dictionaries(
        st.sampled_from(["id", "order_id", "total", "total_cents", "currency"]) | st.text(max_size=6),
        json_values | st.sampled_from(["12.5", "nan", "1e400", "-0"]) | st.floats(),
        max_size=5,
    )
    | json_values
)


@fuzz_settings(0.1)
@given(data=payloads, version=st.none() | st.integers(min_value=1, max_value=6))
def test_any_payload_of_any_version_reads_as_the_event_or_a_schema_error(data: Any, version: int | None) -> None:
    fed("upcast + validate")
    try:
        event: OrderV4 | None = guard.incoming(OrderV4, data, version=version)
    except SchemaError as exc:
        event, error = None, exc
    if event is None:
        assert str(error)
        assert not isinstance(error, UpcastError) or error.__cause__ is None or "failed on this payload" in str(error)
    else:
        assert isinstance(event, OrderV4)


@fuzz_settings(0.04)
@given(data=st.dictionaries(st.text(max_size=4), json_values, max_size=4))
def test_the_payload_given_is_never_modified_by_upcasting(data: dict[str, Any]) -> None:
    fed("upcast leaves input unchanged")
    before = repr(data)
    with contextlib.suppress(SchemaError):
        upcasters.upcast("fz.order", 1, data, 4)
    assert repr(data) == before
