"""Shared pieces of the security tests: a key ring and the shop's payment step as a small app."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from choreograph import App, ConsumerConfig, Context
from choreograph.brokers.memory import MemoryBroker
from choreograph.core.clock import FakeClock
from choreograph.examples.shop.events import InventoryReserved, OrderShipped, PaymentCaptured
from choreograph.security import KeyRing, Security, new_key

FAST = ConsumerConfig(fetch_timeout=0.02, batch_size=100)


@pytest.fixture
def ring() -> KeyRing:
    """Signing keys for the shop's inventory, payment and shipping services."""
    return KeyRing([new_key("inventory"), new_key("payment"), new_key("shipping")])


@dataclass
class PaymentStep:
    """The shop's payment step: payment captures what inventory reserved; shipping ships what was captured."""

    app: App
    broker: MemoryBroker
    shipped: list[tuple[str, int]] = field(default_factory=list)


def payment_step(security: Security | None) -> PaymentStep:
    broker = MemoryBroker(clock=FakeClock())
    app = App("shop", broker=broker, consumer=FAST, security=security)
    step = PaymentStep(app, broker)

    @app.service("payment").on(InventoryReserved)
    async def capture_payment(event: InventoryReserved, ctx: Context) -> PaymentCaptured:
        return PaymentCaptured(order_id=event.order_id, amount_cents=event.total_cents)

    @app.service("shipping").on(PaymentCaptured)
    async def ship(event: PaymentCaptured, ctx: Context) -> OrderShipped:
        step.shipped.append((event.order_id, event.amount_cents))
        return OrderShipped(order_id=event.order_id, tracking_number=f"TRK-{event.order_id}")

    return step
