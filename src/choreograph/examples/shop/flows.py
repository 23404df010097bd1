"""The shop's order flow, as the workflow observer follows it.

``choreograph flows choreograph.examples.shop.app:app`` finds ``flows`` here (the module
next to the app). The observer only watches: nothing in the services changes.
"""

from __future__ import annotations

from choreograph.examples.shop.events import (
    InventoryReleased,
    InventoryReserved,
    OrderCancelled,
    OrderCompleted,
    OrderPlaced,
    OrderShipped,
    PaymentCaptured,
    PaymentDeclined,
)
from choreograph.observe.flows import Compensation, Flow

order_flow = Flow(
    "order",
    start=[OrderPlaced],
    success=[OrderCompleted],
    failure=[OrderCancelled],
    steps=[InventoryReserved, PaymentCaptured, OrderShipped],
    compensations=[
        # A declined payment must release the stock reserved for the order.
        Compensation(InventoryReserved, undo=InventoryReleased, when=[PaymentDeclined], timeout=10.0),
    ],
    timeout=30.0,
)

flows = [order_flow]
