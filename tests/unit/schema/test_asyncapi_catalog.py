"""The AsyncAPI 3.0 document and the event catalog generated from a Topology."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel

from choreograph.core.event import Event
from choreograph.schema import (
    HandlerInfo,
    SchemaRegistry,
    ServiceInfo,
    Topology,
    asyncapi_document,
    render_catalog,
)
from tests.unit.schema import shop

ASYNCAPI_SCHEMA = Path(__file__).parents[2] / "data" / "asyncapi-3.0.0.schema.json"


@pytest.fixture(scope="module")
def asyncapi_validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(ASYNCAPI_SCHEMA.read_text()))


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_document_is_valid_asyncapi_3(asyncapi_validator: jsonschema.Draft7Validator) -> None:
    doc = asyncapi_document(shop.topology(), version="2.1.0")
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in asyncapi_validator.iter_errors(doc)]
    assert errors == []
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"] == {"title": "shop", "version": "2.1.0"}


def test_every_reference_resolves() -> None:
    doc = asyncapi_document(shop.topology())
    for ref in _refs(doc):
        assert _resolve(doc, ref) is not None, ref


def test_one_channel_per_topic_with_its_messages() -> None:
    doc = asyncapi_document(shop.topology())
    assert set(doc["channels"]) == {
        "shop.order.placed",
        "shop.inventory.reserved",
        "shop.inventory.rejected",
        "shop.payment.captured",
        "shop.shipping.shipped",
    }
    channel = doc["channels"]["shop.order.placed"]
    assert channel["address"] == "shop.order.placed"
    assert channel["messages"] == {"shop.order.placed.v1": {"$ref": "#/components/messages/shop.order.placed.v1"}}


def test_message_payload_is_the_event_schema_and_headers_list_cloudevents() -> None:
    doc = asyncapi_document(shop.topology())
    message = doc["components"]["messages"]["shop.order.placed.v1"]
    assert message["payload"]["required"] == ["order_id", "customer_id", "lines", "total"]
    assert message["payload"]["properties"]["lines"]["items"] == {"$ref": "#/components/schemas/Line"}
    assert message["x-choreograph-version"] == 1
    headers = _resolve(doc, message["headers"]["$ref"])
    for name in (
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_specversion",
        "ce_correlationid",
        "ce_causationid",
        "ce_traceparent",
        "ce_partitionkey",
        "ce_schemaversion",
    ):
        assert name in headers["properties"]
    assert message["correlationId"]["location"] == "$message.header#/ce_correlationid"


def test_operations_say_who_sends_and_who_receives() -> None:
    doc = asyncapi_document(shop.topology())
    ops = {
        (op["action"], op["x-choreograph-service"], op["channel"]["$ref"].rsplit("/", 1)[-1])
        for op in doc["operations"].values()
    }
    assert ("send", "orders", "shop.order.placed") in ops
    assert ("receive", "inventory", "shop.order.placed") in ops
    assert ("receive", "notification", "shop.order.placed") in ops
    assert ("send", "notification", "shop.order.placed") not in ops
    receive = doc["operations"]["inventory.receive.reserve"]
    assert receive["x-choreograph-group"] == "inventory.reserve"
    assert receive["messages"] == [{"$ref": "#/channels/shop.order.placed/messages/shop.order.placed.v1"}]


def test_shared_topic_and_clashing_nested_names(asyncapi_validator: jsonschema.Draft7Validator) -> None:
    # Given two events on one topic whose nested models share a name but differ
    class Item(BaseModel):
        sku: str

    class Created(Event, type="cart.created", version=1, topic="cart"):
        item: Item

    class ItemV2(BaseModel):
        sku: int

    ItemV2.__name__ = "Item"

    class Emptied(Event, type="cart.emptied", version=1, topic="cart"):
        item: ItemV2

    topology = Topology("cart", (ServiceInfo("cart", publishes=(Created, Emptied)),))
    # When documented
    doc = asyncapi_document(topology)
    # Then one channel carries both messages and each keeps its own nested schema
    assert set(doc["channels"]["cart"]["messages"]) == {"cart.created.v1", "cart.emptied.v1"}
    schemas = doc["components"]["schemas"]
    created = doc["components"]["messages"]["cart.created.v1"]["payload"]["properties"]["item"]
    emptied = doc["components"]["messages"]["cart.emptied.v1"]["payload"]["properties"]["item"]
    assert _resolve(doc, created["$ref"])["properties"]["sku"]["type"] == "string"
    assert _resolve(doc, emptied["$ref"])["properties"]["sku"]["type"] == "integer"
    assert len(schemas) == 3  # headers + two Items
    assert list(asyncapi_validator.iter_errors(doc)) == []


# -- catalog -------------------------------------------------------------------------------


def test_catalog_draws_publishers_to_consumers() -> None:
    text = render_catalog(shop.topology())
    assert "```mermaid\nflowchart LR" in text
    assert '    svc_orders -->|"shop.order.placed"| svc_inventory' in text
    assert '    svc_orders -->|"shop.order.placed"| svc_notification' in text
    assert '    svc_inventory -->|"shop.inventory.rejected"| svc_orders' in text


def test_catalog_lists_owner_consumers_versions_and_mode() -> None:
    registry = SchemaRegistry()
    registry.register(shop.OrderPlaced)
    registry.set_mode("shop.order.placed", "FULL")
    text = render_catalog(shop.topology(), registry)
    section = text.split("### `shop.order.placed`")[1].split("###")[0]
    assert "- **Owner:** orders" in section
    assert "inventory (`reserve`, group `inventory.reserve`)" in section
    assert "notification (`confirm`, group `notification.confirm`)" in section
    assert "- **Versions in code:** v1" in section
    assert "- **Registered versions:** v1" in section
    assert "- **Compatibility:** FULL" in section
    assert "| `lines[].quantity` | integer minimum=1 | yes |" in section


def test_catalog_marks_events_without_a_publisher_as_external() -> None:
    topology = Topology("x", (ServiceInfo("billing", consumes=(HandlerInfo("on", shop.OrderPlaced, "billing.on"),)),))
    text = render_catalog(topology)
    assert '    svc_external -->|"shop.order.placed"| svc_billing' in text
    assert "- **Owner:** none in this app (external)" in text
