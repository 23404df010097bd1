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


async def _handle_v2_data(reader: type[Event], writer_event: Event) -> tuple[list[str], list[str]]:
    """Run an App whose handler reads ``reader`` and feed it ``writer_event`` (a newer version); return
    (handled order ids, dead-letter reasons)."""
    from choreograph import App, Context
    from choreograph.testing import TestApp

    app = App("tolerance", register_schemas=False)
    handled: list[str] = []

    @app.service("reader").on(reader)
    async def read(event: Event, ctx: Context) -> None:
        handled.append(str(event.order_id))

    async with TestApp(app, raise_on_dead_letter=False) as t:
        await t.publish(writer_event, key="o1")
        await t.drain()
        return handled, [letter.reason for letter in t.dead_letters]


async def test_the_runtime_follows_the_class_a_strict_reader_dead_letters_a_newer_producers_extra_field() -> None:
    # Given a v1 handler with the default strict class, when a v2 producer adds a field
    handled, reasons = await _handle_v2_data(StrictV1, StrictV2(order_id="o1", note="gift"))
    # Then the runtime agrees with the diff (breaks forward): the event is a schema dead letter, not silently trimmed
    assert (handled, reasons) == ([], ["schema"])


async def test_the_runtime_follows_the_class_a_tolerant_reader_handles_it_without_the_field() -> None:
    handled, reasons = await _handle_v2_data(TolerantV1, TolerantV2(order_id="o1", note="gift"))
    assert (handled, reasons) == (["o1"], [])
