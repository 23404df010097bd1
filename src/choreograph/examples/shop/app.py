"""The shop's five services, choreographed by events — no orchestrator.

OrderPlaced -> inventory: InventoryReserved | InventoryRejected
InventoryReserved -> payment: PaymentCaptured | PaymentDeclined
PaymentDeclined -> inventory: InventoryReleased (compensation)
PaymentCaptured -> shipping: OrderShipped
OrderShipped -> orders: OrderCompleted
InventoryRejected | InventoryReleased -> orders: OrderCancelled
OrderCompleted | OrderCancelled -> notification: CustomerNotified

Behaviour is steered by environment variables so that every worker process
of the demo agrees (decisions are hashes of the order id, not random draws):
``SHOP_DECLINE_RATE`` (share of payments declined, default 0.15),
``SHOP_STOCKOUT_RATE`` (share of orders out of stock, 0.1),
``SHOP_FAIL_RATE`` (share of handler attempts failing transiently, 0.05),
``SHOP_BREAK_RELEASE`` (1 = the inventory release handler always fails),
``SHOP_FLAGS_FILE`` (a file of feature flags, one per line, read at every call
so flipping one needs no restart: ``new-carrier-api`` makes the shipping
handler fail every order — the incident drill, ``choreograph demo --incident
stuck-orders``).
A customer named ``poison`` makes the inventory handler fail every attempt,
so that order ends in the dead letter.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from choreograph import App, Context, RetryPolicy
from choreograph.examples.shop.events import (
    CustomerNotified,
    InventoryRejected,
    InventoryReleased,
    InventoryReserved,
    OrderCancelled,
    OrderCompleted,
    OrderPlaced,
    OrderShipped,
    PaymentCaptured,
    PaymentDeclined,
)
from choreograph.examples.shop.flows import order_flow
from choreograph.examples.shop.ledger import PaymentLedger
from choreograph.observe.slo import SLO


class TransientError(RuntimeError):
    """A failure that goes away when tried again (a flaky network call)."""


class CarrierRejected(RuntimeError):
    """The carrier's API refused a shipping label: fails every attempt until the cause is fixed."""


NEW_CARRIER_API = "new-carrier-api"
"""Feature flag: ship through the carrier's new API, which (in the drill) rejects every label."""


def flag(name: str) -> bool:
    """True if feature flag ``name`` is a line of the file ``SHOP_FLAGS_FILE`` names (read at each call)."""
    path = os.environ.get("SHOP_FLAGS_FILE")
    if not path:
        return False
    try:
        return name in Path(path).read_text().split()
    except FileNotFoundError:
        return False


def _share(*parts: object) -> float:
    """Map parts to a stable number in [0, 1): the same in every process."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _rate(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _flaky(ctx: Context, step: str) -> None:
    """Fail the first attempt of a configurable share of handler calls."""
    if ctx.attempt == 1 and _share("fail", step, ctx.envelope.id) < _rate("SHOP_FAIL_RATE", 0.05):
        raise TransientError(f"{step}: upstream timed out (simulated)")


# Short delays so the demo shows the delayed tier without waiting long.
demo_retry = RetryPolicy(immediate=1, delayed=2, base_delay=0.05, max_delay=0.5)

app = App("shop")
# Who runs what: the catalog, the AsyncAPI document and every alert about a service name its owner.
orders = app.service("orders", owner="storefront", oncall="#storefront-oncall")
inventory = app.service("inventory", owner="fulfilment", oncall="#fulfilment-oncall", escalation="fulfilment-lead")
payment = app.service("payment", owner="payments", oncall="#payments-oncall", escalation=["payments-lead", "cto"])
shipping = app.service("shipping", owner="fulfilment", oncall="#fulfilment-oncall", escalation="fulfilment-lead")
notification = app.service("notification")  # unowned: its alerts go to the app's default route
orders.publishes(OrderPlaced)  # from the storefront API; the demo publishes them
app.declare(order_flow)  # watched by the workflow observer: `choreograph flows choreograph.examples.shop.app:app`
# `choreograph slo choreograph.examples.shop.app:app`; `choreograph export prometheus-rules|grafana` alert on them.
order_ends = ["shop.order.completed", "shop.order.cancelled"]
app.declare(
    SLO.success_rate("events-handled", target=0.999),
    SLO.latency("order-decided", event_types=order_ends, threshold=2.0, target=0.99),
    SLO.completion("orders-finish", start="shop.order.placed", ends=order_ends, within=30.0, target=0.995),
)
ledger = PaymentLedger(app)  # SHOP_PAYMENT_LEDGER=sqlite:///ledger.db: payments booked with the transactional outbox


@inventory.on(OrderPlaced, retry=demo_retry)
async def reserve_stock(event: OrderPlaced, ctx: Context) -> InventoryReserved | InventoryRejected:
    if event.customer == "poison":
        raise ValueError(f"order {event.order_id}: warehouse rejects this customer record")
    _flaky(ctx, "reserve")
    if _share("stock", event.order_id) < _rate("SHOP_STOCKOUT_RATE", 0.1):
        return InventoryRejected(order_id=event.order_id, reason=f"{event.items[0].sku} out of stock")
    return InventoryReserved(order_id=event.order_id, total_cents=event.total_cents)


@inventory.on(PaymentDeclined, retry=demo_retry)
async def release_stock(event: PaymentDeclined, ctx: Context) -> InventoryReleased:
    if os.environ.get("SHOP_BREAK_RELEASE") == "1":
        raise RuntimeError("release handler is broken (SHOP_BREAK_RELEASE=1)")
    _flaky(ctx, "release")
    return InventoryReleased(order_id=event.order_id)


@payment.on(InventoryReserved, retry=demo_retry, options=ledger.options)
async def capture_payment(event: InventoryReserved, ctx: Context) -> PaymentCaptured | PaymentDeclined:
    _flaky(ctx, "capture")
    if _share("decline", event.order_id) < _rate("SHOP_DECLINE_RATE", 0.15):
        return PaymentDeclined(order_id=event.order_id, reason="card declined")
    await ledger.book(ctx, event.order_id, event.total_cents)
    return PaymentCaptured(order_id=event.order_id, amount_cents=event.total_cents)


@shipping.on(PaymentCaptured, retry=demo_retry)
async def ship(event: PaymentCaptured, ctx: Context) -> OrderShipped:
    if flag(NEW_CARRIER_API):
        raise CarrierRejected(f"carrier API v2 rejected the label for {event.order_id} (flag {NEW_CARRIER_API})")
    _flaky(ctx, "ship")
    return OrderShipped(order_id=event.order_id, tracking_number=f"TRK-{event.order_id}")


@orders.on(OrderShipped, retry=demo_retry)
async def complete_order(event: OrderShipped, ctx: Context) -> OrderCompleted:
    return OrderCompleted(order_id=event.order_id)


@orders.on(InventoryRejected, retry=demo_retry)
async def cancel_out_of_stock(event: InventoryRejected, ctx: Context) -> OrderCancelled:
    return OrderCancelled(order_id=event.order_id, reason=event.reason)


@orders.on(InventoryReleased, retry=demo_retry)
async def cancel_declined(event: InventoryReleased, ctx: Context) -> OrderCancelled:
    return OrderCancelled(order_id=event.order_id, reason="payment declined")


@notification.on(OrderCompleted, retry=demo_retry)
async def notify_completed(event: OrderCompleted, ctx: Context) -> CustomerNotified:
    return CustomerNotified(order_id=event.order_id, template="order-completed")


@notification.on(OrderCancelled, retry=demo_retry)
async def notify_cancelled(event: OrderCancelled, ctx: Context) -> CustomerNotified:
    return CustomerNotified(order_id=event.order_id, template="order-cancelled")
