"""core.slots: the hand-written __init__ of Envelope and Delivery sets exactly their dataclass fields, in order."""

from __future__ import annotations

import dataclasses

import pytest

from choreograph.core.broker import Delivery
from choreograph.core.envelope import Envelope
from choreograph.core.slots import slot_setters


@dataclasses.dataclass(frozen=True, slots=True, init=False)
class _Pair:
    first: int
    second: int


def test_a_slot_list_that_is_not_the_fields_in_order_is_refused() -> None:
    assert len(slot_setters(_Pair, "first second")) == 2
    for wrong in ("second first", "first", "first second third"):
        with pytest.raises(TypeError, match="must be its dataclass fields in order: first second"):
            slot_setters(_Pair, wrong)


def test_envelope_and_delivery_set_every_field_to_what_was_given() -> None:
    delivery = Delivery("t", 1, 2, b"v", "k", {"h": "1"}, 3.0, 4, 5.0, "fault")
    assert dataclasses.astuple(delivery) == ("t", 1, 2, b"v", "k", {"h": "1"}, 3.0, 4, 5.0, "fault")
    names = [field.name for field in dataclasses.fields(Envelope)]
    values = {name: f"<{name}>" for name in names}
    envelope = Envelope(**values)  # type: ignore[arg-type]
    assert {name: getattr(envelope, name) for name in names} == values
