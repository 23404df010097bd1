"""Next versions of the shop's OrderPlaced, for the schema contract tests."""

from __future__ import annotations

from choreograph import App, Event
from choreograph.examples.shop.events import LineItem


class OrderPlacedWithCoupon(Event, type="shop.order.placed", version=2):
    """Adds an optional field: BACKWARD compatible."""

    order_id: str
    customer: str
    items: list[LineItem]
    total_cents: int
    coupon: str | None = None


class OrderPlacedCentsAsText(Event, type="shop.order.placed", version=2):
    """Changes a field's type: incompatible."""

    order_id: str
    customer: str
    items: list[LineItem]
    total_cents: str


compatible = App("shop")
compatible.service("orders").publishes(OrderPlacedWithCoupon)

incompatible = App("shop")
incompatible.service("orders").publishes(OrderPlacedCentsAsText)
