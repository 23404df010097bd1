"""Validating payloads on publish and consume, and upcasting old payloads."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from choreograph.core.event import Event
from choreograph.schema import (
    IncompatibleSchema,
    JsonSchemaValidator,
    SchemaError,
    SchemaGuard,
    SchemaRegistry,
    SchemaViolation,
    UpcastError,
    Upcasters,
    derive_schema,
    validate_event,
    validate_payload,
)
from tests.unit.schema import shop

GOOD: dict[str, Any] = {
    "order_id": "o-1",
    "customer_id": "c-1",
    "lines": [{"sku": "tea", "quantity": 2}],
    "total": "9.50",
}


class PlacedV2(Event, type="shop.order.placed", version=2):
    order_id: str
    customer: str
    lines: list[shop.Line]
    total: Decimal


class PlacedV3(Event, type="shop.order.placed", version=3):
    order_id: str
    customer: str
    lines: list[shop.Line]
    total: Decimal
    currency: str


class PlacedV2Incompatible(Event, type="shop.order.placed", version=2):
    order_id: int
    customer_id: str
    lines: list[shop.Line]
    total: Decimal


def test_valid_payload_becomes_the_event() -> None:
    event = validate_payload(shop.OrderPlaced, GOOD)
    assert event == shop.OrderPlaced(
        order_id="o-1", customer_id="c-1", lines=[shop.Line(sku="tea", quantity=2)], total=Decimal("9.50")
    )


def test_invalid_payload_names_every_field_and_rule() -> None:
    bad = {**GOOD, "lines": [{"sku": "tea", "quantity": 0}], "extra": 1}
    del bad["total"]
    with pytest.raises(SchemaViolation) as info:
        validate_payload(shop.OrderPlaced, bad)
    errors = {(e.path, e.rule) for e in info.value.errors}
    assert errors == {("lines[0].quantity", "greater_than_equal"), ("total", "missing"), ("extra", "extra_forbidden")}
    assert "shop.order.placed v1: invalid payload" in str(info.value)
    assert "lines[0].quantity" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_non_object_payload_is_a_violation() -> None:
    with pytest.raises(SchemaViolation, match=r"\(root\)"):
        validate_payload(shop.OrderPlaced, [1, 2])


def test_validate_event_catches_model_construct_misuse() -> None:
    event = shop.OrderPlaced.model_construct(order_id="o-1")
    with pytest.raises(SchemaViolation, match="customer_id"):
        validate_event(event)


def test_old_payload_is_upcast_before_validation() -> None:
    upcasters = Upcasters()

    @upcasters.step("shop.order.placed", 1, 2)
    def rename(data: dict[str, Any]) -> dict[str, Any]:
        data["customer"] = data.pop("customer_id")
        return data

    event = validate_payload(PlacedV2, GOOD, version=1, upcasters=upcasters)
    assert event.customer == "c-1"
    assert "customer_id" in GOOD  # the caller's payload is untouched


# -- guard -----------------------------------------------------------------------------------


def test_guard_registers_a_class_once_then_only_validates() -> None:
    registry = SchemaRegistry()
    guard = SchemaGuard(registry)
    event = validate_payload(shop.OrderPlaced, GOOD)
    assert guard.outgoing(event) == event.model_dump(mode="json")
    assert registry.versions("shop.order.placed") == [1]
    registry.set_mode("shop.order.placed", "NONE")  # a cached admission does not read the registry again
    guard.outgoing(event)


def test_guard_refuses_an_unregistered_incompatible_version_naming_field_and_rule() -> None:
    registry = SchemaRegistry()
    registry.register(shop.OrderPlaced)
    guard = SchemaGuard(registry, register=False)
    with pytest.raises(IncompatibleSchema, match=r"order_id: type-changed"):
        guard.admit(PlacedV2Incompatible)


def test_guard_without_registration_admits_a_compatible_new_version() -> None:
    registry = SchemaRegistry()
    registry.register(shop.OrderPlaced)
    guard = SchemaGuard(registry, register=False)
    guard.admit_topology(shop.topology())
    assert registry.versions("shop.order.placed") == [1]
    assert registry.versions("shop.payment.captured") == []


def test_guard_incoming_raises_a_schema_error() -> None:
    guard = SchemaGuard(SchemaRegistry())
    with pytest.raises(SchemaError):
        guard.incoming(shop.OrderPlaced, {"order_id": 1})


# -- jsonschema (slow path) ------------------------------------------------------------------


def test_jsonschema_validator_reports_paths_and_keywords() -> None:
    validator = JsonSchemaValidator()
    schema = derive_schema(shop.OrderPlaced)
    validator.validate(schema, GOOD)
    with pytest.raises(SchemaViolation) as info:
        validator.validate(schema, {**GOOD, "lines": [{"sku": "tea", "quantity": 0}]})
    assert [(e.path, e.rule) for e in info.value.errors] == [("lines[0].quantity", "minimum")]


# -- upcasters -------------------------------------------------------------------------------


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    data["customer"] = data.pop("customer_id")
    return data


def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "currency": "EUR"}


def test_upcasters_chain_steps() -> None:
    upcasters = Upcasters()
    upcasters.register(PlacedV2, 2, 3, _v2_to_v3)
    upcasters.register("shop.order.placed", 1, 2, _v1_to_v2)
    out = upcasters.upcast("shop.order.placed", 1, GOOD, 3)
    assert out == {**{k: v for k, v in GOOD.items() if k != "customer_id"}, "customer": "c-1", "currency": "EUR"}
    assert upcasters.path("shop.order.placed", 1, 3) == [(1, 2), (2, 3)]
    assert validate_payload(PlacedV3, GOOD, version=1, upcasters=upcasters).currency == "EUR"


def test_same_version_is_returned_unchanged() -> None:
    assert Upcasters().upcast("shop.order.placed", 2, GOOD, 2) is GOOD


def test_missing_step_is_a_clear_error() -> None:
    upcasters = Upcasters()
    upcasters.register("shop.order.placed", 1, 2, _v1_to_v2)
    with pytest.raises(UpcastError, match=r"no upcaster for shop.order.placed from v2 .*registered steps: v1->v2"):
        upcasters.upcast("shop.order.placed", 1, GOOD, 3)


def test_downcast_is_refused() -> None:
    with pytest.raises(UpcastError, match="older"):
        Upcasters().upcast("shop.order.placed", 3, GOOD, 1)


def test_a_version_may_be_skipped_but_not_overshot() -> None:
    upcasters = Upcasters()
    upcasters.register("t.e", 1, 3, lambda d: {**d, "v": 3})
    assert upcasters.upcast("t.e", 1, {}, 3) == {"v": 3}
    with pytest.raises(UpcastError, match="overshoots"):
        upcasters.upcast("t.e", 1, {}, 2)


def test_duplicate_or_backward_steps_are_refused() -> None:
    upcasters = Upcasters()
    upcasters.register("t.e", 1, 2, _v1_to_v2)
    with pytest.raises(ValueError, match="already has an upcaster from v1"):
        upcasters.register("t.e", 1, 2, _v1_to_v2)
    with pytest.raises(ValueError, match="higher version"):
        upcasters.register("t.e", 2, 2, _v1_to_v2)


def test_a_step_that_returns_no_dict_is_an_error() -> None:
    upcasters = Upcasters()
    upcasters.register("t.e", 1, 2, lambda d: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(SchemaError, match="returned NoneType"):
        upcasters.upcast("t.e", 1, {}, 2)
