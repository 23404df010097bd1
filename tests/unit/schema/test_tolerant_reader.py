"""`schema diff` and validation agree on a newer producer's extra fields, per event class (``extra``)."""

from __future__ import annotations

import pydantic
import pytest
from pydantic import ConfigDict

from choreograph import Event
from choreograph.schema.compatibility import diff_schemas
from choreograph.schema.derive import derive_schema
from choreograph.schema.rules import Rule
from choreograph.schema.tolerance import tolerant_reader, unknown_fields


class StrictV1(Event, type="tolerance.strict"):
    order_id: str


class StrictV2(Event, type="tolerance.strict", version=2):
    order_id: str
    note: str = ""


class TolerantV1(Event, type="tolerance.tolerant"):
    model_config = ConfigDict(frozen=True, extra="ignore")
    order_id: str


class TolerantV2(Event, type="tolerance.tolerant", version=2):
    model_config = ConfigDict(frozen=True, extra="ignore")
    order_id: str
    note: str = ""


def breaks_forward(old: type[Event], new: type[Event]) -> bool:
    return any(c.breaks_forward for c in diff_schemas(derive_schema(old), derive_schema(new)))


def test_a_strict_reader_rejects_added_fields_and_diff_says_the_addition_breaks_forward() -> None:
    # Given the default (extra="forbid") and data written by v2
    data = StrictV2(order_id="o1", note="gift").model_dump(mode="json")
    # Then the diff says v1 readers break, and a v1 reader does reject the data
    assert not tolerant_reader(StrictV1)
    assert breaks_forward(StrictV1, StrictV2)
    assert [(c.path, c.rule) for c in diff_schemas(derive_schema(StrictV1), derive_schema(StrictV2))] == [
        ("note", Rule.FIELD_ADDED)
    ]
    with pytest.raises(pydantic.ValidationError, match=r"extra_forbidden|Extra inputs"):
        StrictV1.model_validate(data)


def test_a_tolerant_reader_drops_added_fields_and_diff_says_the_addition_is_forward_compatible() -> None:
    # Given a class that opts into the tolerant reader, and data written by v2
    data = TolerantV2(order_id="o1", note="gift").model_dump(mode="json")
    # Then the diff finds nothing breaking forward, and a v1 reader reads the data without the new field
    assert tolerant_reader(TolerantV1)
    assert not breaks_forward(TolerantV1, TolerantV2)
    assert unknown_fields(TolerantV1, data) == ["note"]
    assert TolerantV1.model_validate(data) == TolerantV1(order_id="o1")
