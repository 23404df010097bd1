"""Example events and a hand-built Topology of the reference shop, for the schema tests."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from choreograph.core.event import Event
from choreograph.schema import HandlerInfo, ServiceInfo, Topology


class Line(BaseModel):
    """One order line."""

    model_config = ConfigDict(extra="forbid")

    sku: str
    quantity: int = Field(ge=1)


class OrderPlaced(Event, type="shop.order.placed", version=1):
    """A customer placed an order."""

    order_id: str
    customer_id: str
    lines: list[Line]
    total: Decimal


class StockReserved(Event, type="shop.inventory.reserved", version=1):
    """Inventory reserved every line of an order."""

    order_id: str


class StockRejected(Event, type="shop.inventory.rejected", version=1):
    """Inventory could not reserve an order."""

    order_id: str
    reason: str


class PaymentMethod(StrEnum):
    CARD = "card"
    INVOICE = "invoice"


class PaymentCaptured(Event, type="shop.payment.captured", version=1):
    """The payment for an order was captured."""

    order_id: str
    amount: Decimal
    method: PaymentMethod = PaymentMethod.CARD


class OrderShipped(Event, type="shop.shipping.shipped", version=1):
    """The order left the warehouse."""

    order_id: str
    carrier: str
    tracking: str | None = None


def topology() -> Topology:
    """Return the shop: orders -> inventory -> payment -> shipping, notification listens."""
    return Topology(
        "shop",
        (
            ServiceInfo(
                "orders",
                consumes=(HandlerInfo("on_rejected", StockRejected, "orders.on_rejected"),),
                publishes=(OrderPlaced,),
            ),
            ServiceInfo(
                "inventory",
                consumes=(HandlerInfo("reserve", OrderPlaced, "inventory.reserve"),),
                publishes=(StockReserved, StockRejected),
            ),
            ServiceInfo(
                "payment",
                consumes=(HandlerInfo("capture", StockReserved, "payment.capture"),),
                publishes=(PaymentCaptured,),
            ),
            ServiceInfo(
                "shipping",
                consumes=(HandlerInfo("ship", PaymentCaptured, "shipping.ship"),),
                publishes=(OrderShipped,),
            ),
            ServiceInfo(
                "notification",
                consumes=(
                    HandlerInfo("confirm", OrderPlaced, "notification.confirm"),
                    HandlerInfo("shipped", OrderShipped, "notification.shipped"),
                ),
            ),
        ),
    )


class App:
    """Stands in for the runtime's App: anything with ``topology()`` works."""

    def topology(self) -> Topology:
        return topology()


app = App()
