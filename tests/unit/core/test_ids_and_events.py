"""UUIDv7 ids and the Event contract."""

from __future__ import annotations

import uuid

import pytest

from choreograph import ContractError, Event, derived_id, new_id
from choreograph.core.ids import id_time_ms


def test_new_ids_are_uuid7_and_strictly_increasing() -> None:
    ids = [new_id() for _ in range(5000)]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_derived_id_is_deterministic_time_ordered_and_distinct_per_position() -> None:
    parent = new_id()
    first = derived_id(parent, "inventory.reserve", 0)
    assert first == derived_id(parent, "inventory.reserve", 0)
    assert first != derived_id(parent, "inventory.reserve", 1)
    assert first != derived_id(parent, "payment.capture", 0)
    assert uuid.UUID(first).version == 7
    assert id_time_ms(first) == id_time_ms(parent)


class Placed(Event, type="shop.order.placed", version=3):
    order_id: str


class Shared(Event, type="shop.order.noted", topic="shop.orders"):
    order_id: str


def test_event_declares_stable_type_version_and_topic() -> None:
    assert Placed.event_type() == "shop.order.placed"
    assert Placed.event_version() == 3
    assert Placed.topic() == "shop.order.placed"
    assert Shared.topic() == "shop.orders"
    assert Shared.event_version() == 1


def test_event_without_type_is_refused_with_a_hint() -> None:
    class Untyped(Event):
        x: int

    with pytest.raises(ContractError, match="declares no event type"):
        Untyped.event_type()


@pytest.mark.parametrize("bad", ["", "has space", ".leading"])
def test_invalid_type_name_is_refused(bad: str) -> None:
    with pytest.raises(ContractError, match="not a valid name"):

        class Bad(Event, type=bad):
            x: int


def test_events_are_immutable_and_strict() -> None:
    placed = Placed(order_id="1")
    with pytest.raises(ValueError, match="frozen"):
        placed.order_id = "2"  # type: ignore[misc]
    with pytest.raises(ValueError, match="extra"):
        Placed(order_id="1", unexpected=True)  # type: ignore[call-arg]
