"""App.topology(): who publishes and who consumes each event, inferred from handlers."""

from __future__ import annotations

from choreograph.examples.shop.app import app
from choreograph.examples.shop.events import InventoryRejected, InventoryReserved, OrderPlaced


def test_publishers_come_from_return_annotations_and_declarations() -> None:
    topology = app.topology()
    services = {s.name: s for s in topology.services}
    assert set(services) == {"orders", "inventory", "payment", "shipping", "notification"}
    assert {InventoryReserved, InventoryRejected} <= set(services["inventory"].publishes)
    assert OrderPlaced in services["orders"].publishes  # declared with Service.publishes
    assert topology.publishers("shop.order.placed") == ["orders"]


def test_consumers_are_handlers_with_their_groups() -> None:
    topology = app.topology()
    consumers = topology.consumers("shop.order.placed")
    assert [(service, handler.group) for service, handler in consumers] == [("inventory", "inventory.reserve-stock")]
