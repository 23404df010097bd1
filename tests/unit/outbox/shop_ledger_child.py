"""Child of test_shop_ledger: the shop app imported with SHOP_PAYMENT_LEDGER set, run under TestApp.

Prints one JSON line: ledger rows, orders completed in the log, events shipped by the relay.
"""

from __future__ import annotations

import asyncio
import json

from sqlalchemy import func, select

from choreograph.examples.shop.app import app, ledger
from choreograph.examples.shop.events import OrderCompleted, OrderPlaced
from choreograph.outbox.companion import companions_of
from choreograph.outbox.relay import Relay
from choreograph.testing import TestApp
from tests.outbox.model import read_log


async def main() -> None:
    [relay] = companions_of(app)
    assert isinstance(relay, Relay)
    async with TestApp(app) as test:
        for n in range(5):
            order = f"order-{n}"
            await test.publish(
                OrderPlaced(order_id=order, customer="c", items=[{"sku": "s", "quantity": 1}], total_cents=100 + n),
                key=order,
            )
        while True:  # drain, ship what the payment handler staged, until nothing is left to ship
            await test.drain()
            if not await relay.ship_once():
                break
        completed = await read_log(test.broker, OrderCompleted.topic())
    assert ledger._table is not None
    async with relay._engine.connect() as conn:  # the relay's engine is the ledger's database
        rows = (await conn.execute(select(func.count()).select_from(ledger._table))).scalar_one()
    print(json.dumps({"ledger": rows, "completed": len(completed), "shipped": relay.shipped}))


asyncio.run(main())
