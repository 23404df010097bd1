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


def _order_flow(timeout: float) -> Flow:
    return Flow(
        "order",
        start=[OrderPlaced],
        success=[OrderCompleted],
        failure=[OrderCancelled],
        steps=[InventoryReserved, PaymentCaptured, OrderShipped],
        compensations=[
            # A declined payment must release the stock reserved for the order.
            Compensation(InventoryReserved, undo=InventoryReleased, when=[PaymentDeclined], timeout=10.0),
        ],
        timeout=timeout,
    )


order_flow = _order_flow(30.0)

flows = [order_flow]

incident_flows = [_order_flow(5.0)]
"""The same flow with a 5 s deadline, for the incident drill: orders count as stuck within seconds
(``choreograph flows choreograph.examples.shop.app:app --flows choreograph.examples.shop.flows:incident_flows``)."""
