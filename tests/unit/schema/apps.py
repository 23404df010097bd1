"""Variants of the shop app for the CLI tests: a compatible and an incompatible next version."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from choreograph.core.event import Event
from choreograph.schema import ServiceInfo, Topology
from tests.unit.schema import shop


class PlacedWithNote(Event, type="shop.order.placed", version=2):
    order_id: str
    customer_id: str
    lines: list[shop.Line]
    total: Decimal
    note: str = ""


class PlacedRenamed(Event, type="shop.order.placed", version=2):
    order_id: str
    customer: str
    lines: list[shop.Line]
    total: Decimal


def _with_orders_publishing(event: type[Event]) -> Topology:
    base = shop.topology()
    services = tuple(replace(s, publishes=(event,)) if s.name == "orders" else s for s in base.services)
    return Topology(base.app_name, services)


compatible = _with_orders_publishing(PlacedWithNote)
incompatible = _with_orders_publishing(PlacedRenamed)
not_an_app = ServiceInfo("x")
