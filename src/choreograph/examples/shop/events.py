"""The shop's domain events: the contract between its services."""

from __future__ import annotations

from pydantic import BaseModel

from choreograph import Event


class LineItem(BaseModel):
    """One line of an order (a value object, not published on its own)."""

    sku: str
    quantity: int


class OrderPlaced(Event, type="shop.order.placed", version=1):
    """A customer placed an order. Starts the order flow."""

    order_id: str
    customer: str
    items: list[LineItem]
    total_cents: int


class InventoryReserved(Event, type="shop.inventory.reserved", version=1):
    """Stock for every line of the order is held."""

    order_id: str
    total_cents: int


class InventoryRejected(Event, type="shop.inventory.rejected", version=1):
    """Some item is out of stock; nothing was reserved."""

    order_id: str
    reason: str


class PaymentCaptured(Event, type="shop.payment.captured", version=1):
    """The customer was charged."""

    order_id: str
    amount_cents: int


class PaymentDeclined(Event, type="shop.payment.declined", version=1):
    """The charge was declined; reserved stock must be released."""

    order_id: str
    reason: str


class InventoryReleased(Event, type="shop.inventory.released", version=1):
    """Compensation: the reservation for a declined order was undone."""

    order_id: str


class OrderShipped(Event, type="shop.order.shipped", version=1):
    """The parcel left the warehouse."""

    order_id: str
    tracking_number: str


class OrderCompleted(Event, type="shop.order.completed", version=1):
    """Terminal success: paid and shipped."""

    order_id: str


class OrderCancelled(Event, type="shop.order.cancelled", version=1):
    """Terminal failure: out of stock, or payment declined and stock released."""

    order_id: str
    reason: str


class CustomerNotified(Event, type="shop.notification.sent", version=1):
    """The customer was told how their order ended."""

    order_id: str
    template: str
