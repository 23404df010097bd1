"""The shop demo under TestApp: an order runs to the customer, retries and compensations included, with no polling."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from choreograph.examples.shop.events import (
    CustomerNotified,
    InventoryReleased,
    LineItem,
    OrderCancelled,
    OrderCompleted,
    OrderPlaced,
)
from choreograph.testing import TestApp, UnexpectedDeadLetter


@pytest.fixture
def shop(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A fresh copy of the shop app module (an App keeps its broker): no declines, stock-outs or failures."""
    monkeypatch.setenv("SHOP_DECLINE_RATE", "0")
    monkeypatch.setenv("SHOP_STOCKOUT_RATE", "0")
    monkeypatch.setenv("SHOP_FAIL_RATE", "0")
    monkeypatch.delenv("SHOP_BREAK_RELEASE", raising=False)
    return importlib.reload(importlib.import_module("choreograph.examples.shop.app"))


def order(order_id: str, customer: str = "ada") -> OrderPlaced:
    return OrderPlaced(order_id=order_id, customer=customer, items=[LineItem(sku="sku-1", quantity=2)], total_cents=990)


async def test_an_order_runs_through_five_services_to_the_customer(shop: ModuleType) -> None:
    async with TestApp(shop.app) as t:
        # When one order is placed and the app drained
        placed = await t.publish(order("o1"), key="o1")
        await t.drain()
        # Then it was completed and the customer notified, once
        assert t.published(OrderCompleted) == [OrderCompleted(order_id="o1")]
        assert t.published(CustomerNotified) == [CustomerNotified(order_id="o1", template="order-completed")]
        # and the whole choreography is one correlation, step by step
        assert [env.type for env in t.envelopes()] == [
            "shop.order.placed",
            "shop.inventory.reserved",
            "shop.payment.captured",
            "shop.order.shipped",
            "shop.order.completed",
            "shop.notification.sent",
        ]
        assert {env.correlationid for env in t.envelopes()} == {placed.id}


async def test_every_flaky_step_retries_and_the_order_still_completes(
    shop: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given every first attempt of reserve, capture and ship failing
    monkeypatch.setenv("SHOP_FAIL_RATE", "1.0")
    async with TestApp(shop.app) as t:
        await t.publish(order("o1"), key="o1")
        await t.drain()
        # Then each flaky step was retried once and the order completed
        stats = t.app.stats()
        assert {
            group: stats[group].retries
            for group in ("inventory.reserve-stock", "payment.capture-payment", "shipping.ship")
        } == {
            "inventory.reserve-stock": 1,
            "payment.capture-payment": 1,
            "shipping.ship": 1,
        }
        assert t.published(OrderCompleted) == [OrderCompleted(order_id="o1")]


async def test_a_declined_payment_is_compensated(shop: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given every payment declined
    monkeypatch.setenv("SHOP_DECLINE_RATE", "1.0")
    async with TestApp(shop.app) as t:
        await t.publish(order("o1"), key="o1")
        await t.drain()
        # Then the stock was released and the order cancelled
        assert t.published(InventoryReleased) == [InventoryReleased(order_id="o1")]
        assert t.published(OrderCancelled) == [OrderCancelled(order_id="o1", reason="payment declined")]
        assert t.published(OrderCompleted) == []


async def test_the_poison_order_fails_the_drain_with_the_handlers_error(shop: ModuleType) -> None:
    async with TestApp(shop.app) as t:
        await t.publish(order("o1"), key="o1")
        await t.publish(order("o99", customer="poison"), key="o99")
        # When drained, then the dead letter of the poison order is raised, after the shop's 1 + 1 + 2 attempts
        with pytest.raises(UnexpectedDeadLetter, match="warehouse rejects this customer record") as raised:
            await t.drain()
        assert raised.value.dead_letter.group == "inventory.reserve-stock"
        assert raised.value.dead_letter.attempts == 4
        # and the other order still runs to the end
        await t.drain()
        assert t.published(OrderCompleted) == [OrderCompleted(order_id="o1")]


async def test_a_busy_day_ends_with_one_notice_per_order(shop: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the shop's default rates of declines, stock-outs and transient failures, and a poison order
    for name in ("SHOP_DECLINE_RATE", "SHOP_STOCKOUT_RATE", "SHOP_FAIL_RATE"):
        monkeypatch.delenv(name)
    orders = [f"o{i}" for i in range(60)]
    async with TestApp(shop.app, raise_on_dead_letter=False) as t:
        for order_id in orders:
            await t.publish(order(order_id), key=order_id)
        await t.publish(order("o-poison", customer="poison"), key="o-poison")
        await t.drain()
        # Then every order but the poison one ended with exactly one notice, completed or cancelled
        notices = t.published(CustomerNotified)
        assert sorted(n.order_id for n in notices) == sorted(orders)
        ended = {e.order_id for e in t.published(OrderCompleted)} | {e.order_id for e in t.published(OrderCancelled)}
        assert ended == set(orders)
        # and the poison order is the one dead letter
        assert [(d.group, d.key) for d in t.dead_letters] == [("inventory.reserve-stock", "o-poison")]
