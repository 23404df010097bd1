"""The workflow observer on the shop choreography, run in-process."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

from choreograph import App
from choreograph.brokers.memory import MemoryBroker
from choreograph.core import codec
from choreograph.examples.shop.events import LineItem, OrderPlaced
from choreograph.examples.shop.flows import flows, order_flow
from choreograph.observe.flows import (
    FlowCompensationMissing,
    MemoryFlowStore,
    Observer,
    ObserverConfig,
    SqliteFlowStore,
    summarize,
)
from choreograph.observe.flows.instance import COMP_DONE
from tests.conftest import wait_until

FAST = ObserverConfig(fetch_timeout=0.02, check_interval=0.02, dead_letter_interval=0.05)
ORDERS = 80


@pytest.fixture
def shop(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A fresh copy of the shop app module: declines and stock-outs, no transient failures."""
    monkeypatch.setenv("SHOP_DECLINE_RATE", "0.3")
    monkeypatch.setenv("SHOP_STOCKOUT_RATE", "0.1")
    monkeypatch.setenv("SHOP_FAIL_RATE", "0")
    monkeypatch.delenv("SHOP_BREAK_RELEASE", raising=False)
    module = importlib.reload(importlib.import_module("choreograph.examples.shop.app"))
    return module


def expected(shop: ModuleType, orders: list[str]) -> tuple[set[str], set[str]]:
    """(orders out of stock, orders declined after a reservation), as the shop decides them."""
    stockouts = {o for o in orders if shop._share("stock", o) < 0.1}
    declined = {o for o in orders if o not in stockouts and shop._share("decline", o) < 0.3}
    return stockouts, declined


async def place_orders(app: App, count: int) -> dict[str, str]:
    """Publish ``count`` orders; return correlation id -> order id."""
    envelopes = await app.publish_many(
        (
            OrderPlaced(order_id=f"o{i}", customer="ada", items=[LineItem(sku="sku-1", quantity=1)], total_cents=500),
            f"o{i}",
        )
        for i in range(count)
    )
    return {env.id: env.data["order_id"] for env in envelopes}


async def test_every_order_cancelled_by_a_decline_shows_its_compensation(shop: ModuleType) -> None:
    # Given the shop running on the in-memory broker, watched by the observer
    app: App = shop.app
    app.configure_broker(MemoryBroker())
    observer = Observer(app, flows, store=MemoryFlowStore(), config=FAST)
    await app.start()
    await observer.start()
    try:
        # When orders are placed and the choreography runs to the end
        placed = await place_orders(app, ORDERS)
        await wait_until(
            lambda: (f := observer.figures()["order"]).completed + f.failed == ORDERS, 20, "every order to finish"
        )
    finally:
        await observer.stop()
        await app.stop()

    # Then every declined order was compensated (stock released) and counted so
    stockouts, declined = expected(shop, list(placed.values()))
    assert declined, "the decline rate should produce some declines"
    figures = observer.figures()["order"]
    assert figures.started == ORDERS
    assert figures.failed == len(stockouts | declined)
    assert figures.completed == ORDERS - len(stockouts | declined)
    assert figures.compensated == len(declined)
    assert (figures.compensation_missing, figures.compensation_failed, figures.stuck) == (0, 0, 0)
    for cid, order_id in placed.items():
        instance = await observer.lookup("order", cid)  # finished instances leave memory: from the store
        assert instance is not None
        states = [c.state for c in instance.compensations(order_flow, observer.clock.now())]
        assert states == ([COMP_DONE] if order_id in declined else [])
    assert figures.time_to_finality.count == ORDERS
    assert set(figures.step_latency) >= {"shop.inventory.reserved", "shop.order.completed"}

    # And replaying the log gives the same figures
    replayed = (await summarize(app, flows))["order"]
    assert (replayed.started, replayed.completed, replayed.failed, replayed.compensated) == (
        figures.started,
        figures.completed,
        figures.failed,
        figures.compensated,
    )
    await app.close()


async def test_broken_release_handler_is_reported_as_compensation_failed(
    shop: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the inventory release handler always fails (and dead-letters after its short retries)
    monkeypatch.setenv("SHOP_BREAK_RELEASE", "1")
    app: App = shop.app
    app.configure_broker(MemoryBroker())
    observer = Observer(app, flows, store=MemoryFlowStore(), config=FAST)
    await app.start()
    await observer.start()
    placed = await place_orders(app, ORDERS)
    _, declined = expected(shop, list(placed.values()))
    try:
        # When every order got as far as it can
        await wait_until(
            lambda: (
                (f := observer.figures()["order"]).completed + f.failed == ORDERS - len(declined)
                and f.compensation_failed == len(declined)
            ),
            20,
            "declined orders to be flagged",
        )
        await wait_until(lambda: observer.stats.notices_published >= ORDERS, 10, "the notices")
    finally:
        await observer.stop()
        await app.stop()

    # Then each declined order is in flight with a failed compensation, and one alert each was published
    figures = observer.figures()["order"]
    assert figures.in_flight == len(declined)
    assert figures.compensated == 0
    broker = app.broker
    assert isinstance(broker, MemoryBroker)
    alerts = [codec.decode(d.value) for d in await broker.read(FlowCompensationMissing.topic(), limit=10_000)]
    flagged = {placed[env.correlationid or ""] for env in alerts}
    assert flagged == declined
    assert {env.data["problem"] for env in alerts} == {"failed"}
    assert all("inventory.release-stock" in env.data["detail"] for env in alerts)
    await app.close()


async def test_observer_restarted_mid_run_on_sqlite_counts_every_order_once(shop: ModuleType, tmp_path: Path) -> None:
    # Given the shop on a SQLite log and an observer keeping its state in the same file
    url = f"sqlite:///{tmp_path}/shop.db"
    app: App = shop.app
    app.configure_broker(url)
    first = Observer(app, flows, config=FAST)
    assert isinstance(first.store, SqliteFlowStore)
    await app.start()
    await first.start()
    placed = await place_orders(app, ORDERS)

    # When the observer stops mid-run and a new one resumes from the stored state
    await wait_until(lambda: first.stats.applied > 0, 20, "the first observer to make progress")
    await first.close()
    second = Observer(app, flows, config=FAST)
    await second.start()
    try:
        await wait_until(
            lambda: (f := second.figures()["order"]).completed + f.failed == ORDERS, 30, "every order to finish"
        )
    finally:
        await second.close()
        await app.stop()

    # Then nothing was lost or counted twice
    figures = second.figures()["order"]
    stockouts, declined = expected(shop, list(placed.values()))
    assert figures.started == ORDERS
    assert figures.compensated == len(declined)
    assert figures.failed == len(stockouts | declined)
    completions = [d for d in await app.broker.read("choreograph.flow.completed", limit=10_000)]  # type: ignore[attr-defined]
    assert len({codec.decode(d.value).correlationid for d in completions}) == ORDERS
    await app.close()
