"""An App that signs its events, for the CLI tests (``tests.unit.security.signed_app:app``)."""

from __future__ import annotations

from choreograph import App, Context
from choreograph.examples.shop.events import InventoryReserved, PaymentCaptured
from choreograph.security import KeyRing, Security, new_key

ring = KeyRing([new_key("inventory"), new_key("payment")])
app = App("shop", security=Security(keys=ring))


@app.service("payment").on(InventoryReserved)
async def capture(event: InventoryReserved, ctx: Context) -> PaymentCaptured:
    return PaymentCaptured(order_id=event.order_id, amount_cents=event.total_cents)
