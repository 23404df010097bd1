"""Observability of the shop choreography, run in-process: traces, metrics, logs, trace view, SLOs."""

from __future__ import annotations

import asyncio
import importlib
import io
import logging
import textwrap
from pathlib import Path
from types import ModuleType

import orjson
import pytest
import typer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from choreograph import App, Context
from choreograph.examples.shop.events import LineItem, OrderPlaced
from choreograph.observe.logs import ContextFilter, JsonFormatter, install_log_context
from choreograph.observe.metrics import serve_metrics
from choreograph.observe.tracing import install_tracing
from choreograph.ops.observe_cli import register
from choreograph.testing import TestApp
from tests.conftest import wait_until

SERVICES = {"inventory", "payment", "shipping", "orders", "notification"}


@pytest.fixture
def shop(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A fresh copy of the shop app module: no declines, no stock-outs, no transient failures."""
    monkeypatch.setenv("SHOP_DECLINE_RATE", "0")
    monkeypatch.setenv("SHOP_STOCKOUT_RATE", "0")
    monkeypatch.setenv("SHOP_FAIL_RATE", "0")
    monkeypatch.delenv("SHOP_BREAK_RELEASE", raising=False)
    return importlib.reload(importlib.import_module("choreograph.examples.shop.app"))


def order(i: int, customer: str = "ada") -> OrderPlaced:
    return OrderPlaced(order_id=f"o{i}", customer=customer, items=[LineItem(sku="sku-1", quantity=1)], total_cents=500)


def notified(app: App) -> int:
    return sum(s.handled for g, s in app.stats().items() if g.startswith("notification."))


async def test_one_order_is_one_connected_trace_and_a_retried_step_shows_each_attempt(
    shop: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the shop traced with the SDK's in-memory exporter, every first attempt of a flaky step failing
    monkeypatch.setenv("SHOP_FAIL_RATE", "1.0")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app: App = shop.app
    install_tracing(app, tracer_provider=provider)
    async with TestApp(app) as t:
        # When one order is placed and runs to the customer notification
        placed = await t.publish(order(1), key="o1")
        await t.drain()
    spans = exporter.get_finished_spans()
    # Then every span belongs to one trace
    assert {s.context.trace_id for s in spans} == {spans[0].context.trace_id}
    # and it is connected: one root (the publish), every other span's parent is in the trace
    ids = {s.context.span_id for s in spans}
    roots = [s for s in spans if s.parent is None]
    assert [r.name for r in roots] == ["send shop.order.placed"]
    assert all(s.parent.span_id in ids for s in spans if s.parent is not None)
    # and it spans all five services
    consumers = [s for s in spans if s.kind is SpanKind.CONSUMER]
    assert {(s.attributes or {})["choreograph.service"] for s in consumers} == SERVICES
    assert {(s.attributes or {})["messaging.message.conversation_id"] for s in spans} == {placed.id}
    # and each flaky step shows its failed attempt and its successful retry, under the same producer
    for group in ("inventory.reserve-stock", "payment.capture-payment", "shipping.ship"):
        attempts = sorted(
            (s for s in consumers if (s.attributes or {})["messaging.consumer.group.name"] == group),
            key=lambda s: (s.attributes or {})["choreograph.attempt"],
        )
        assert [
            ((s.attributes or {})["choreograph.attempt"], (s.attributes or {})["choreograph.outcome"]) for s in attempts
        ] == [
            (1, "retry"),
            (2, "success"),
        ], group
        assert attempts[0].parent == attempts[1].parent


def scrape_values(body: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


async def get_metrics(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await writer.drain()
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return body


async def test_scraping_a_running_worker_shows_what_happened(shop: ModuleType) -> None:
    # Given the shop serving /metrics
    orders, poison = 12, 1
    app: App = shop.app
    server = await serve_metrics(app, 0, host="127.0.0.1")
    try:
        async with TestApp(app, raise_on_dead_letter=False) as t:
            # When N orders flow to the end and a poison order ends in the dead letter
            for i in range(orders):
                await t.publish(order(i), key=f"o{i}")
            await t.publish(order(99, customer="poison"), key="o99")
            await t.drain()
            # Then a scrape of the running worker shows matching counts
            values = scrape_values(await get_metrics(server.port))
    finally:
        await server.close()

    def value(name: str, **labels: str) -> float:
        return values.get((name, frozenset(labels.items())), 0.0)

    handled = "choreograph_events_handled_total"
    for group in ("inventory.reserve-stock", "payment.capture-payment", "shipping.ship", "orders.complete-order"):
        assert value(handled, group=group, outcome="success") == orders, group
    assert value(handled, group="notification.notify-completed", outcome="success") == orders
    assert value(handled, group="inventory.reserve-stock", outcome="dead_letter") == poison
    assert value(handled, group="inventory.reserve-stock", outcome="retry") == poison * (
        shop.demo_retry.max_attempts - 1
    )
    published = "choreograph_events_published_total"
    assert value(published, service="shop", topic="shop.order.placed", event_type="shop.order.placed") == orders + 1
    assert value(published, service="orders", topic="shop.order.completed", event_type="shop.order.completed") == orders
    assert value("choreograph_end_to_end_latency_seconds_count", event_type="shop.order.completed") == orders
    assert value("choreograph_dead_letters_open", group="inventory.reserve-stock", reason="error") == poison
    lag = [v for (name, _), v in values.items() if name == "choreograph_consumer_lag_records"]
    assert lag and sum(lag) == 0


async def test_log_lines_written_while_handling_carry_the_correlation_id(shop: ModuleType) -> None:
    # Given the shop with the log context and an extra handler that logs, captured as JSON
    app: App = shop.app
    install_log_context(app)

    @app.service("audit").on(OrderPlaced)
    async def record_order(event: OrderPlaced, ctx: Context) -> None:
        logging.getLogger("shop.audit").info("order %s placed by %s", event.order_id, event.customer)

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    audit = logging.getLogger("shop.audit")
    audit.addHandler(handler)
    audit.setLevel(logging.INFO)
    try:
        async with TestApp(app) as t:
            # When orders are handled
            placed = [await t.publish(order(i), key=f"o{i}") for i in range(3)]
            await t.drain()
    finally:
        audit.removeHandler(handler)
    # Then each line carries its order's correlation id, event and handler
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert sorted(line["correlation_id"] for line in lines) == sorted(env.id for env in placed)
    assert {(line["service"], line["handler"], line["event_type"]) for line in lines} == {
        ("audit", "record-order", "shop.order.placed")
    }


def observe_cli() -> typer.Typer:
    cli = typer.Typer()
    register(cli)
    return cli


async def run_on_sqlite(app: App, url: str, orders: int) -> list[str]:
    app.configure_broker(url)
    await app.start()
    try:
        placed = [await app.publish(order(i), key=f"o{i}") for i in range(orders)]
        await wait_until(lambda: notified(app) == orders, 30, "every order to end")
    finally:
        await app.close()
    return [env.id for env in placed]


async def test_trace_command_shows_the_compensation_branch(
    shop: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a declined order, compensated by releasing its stock, in a SQLite log
    monkeypatch.setenv("SHOP_DECLINE_RATE", "1.0")
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    (correlation,) = await run_on_sqlite(shop.app, url, 1)
    # When `choreograph trace` runs on it
    result = await asyncio.to_thread(
        CliRunner().invoke, observe_cli(), ["trace", correlation, "--broker", url], env={"COLUMNS": "220"}
    )
    # Then the waterfall shows the whole chain, compensation included, in causal order
    assert result.exit_code == 0, result.output
    chain = [
        "shop.order.placed",
        "shop.inventory.reserved",
        "shop.payment.declined",
        "shop.inventory.released",
        "shop.order.cancelled",
        "shop.notification.sent",
    ]
    positions = [result.output.index(event_type) for event_type in chain]
    assert positions == sorted(positions)
    assert "6 event(s), 5 service(s)" in result.output.replace("\n", " ")


async def test_slo_command_computes_slis_from_the_log(
    shop: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given an app module declaring SLOs on the shop, and orders (one poisoned) in its SQLite log
    url = f"sqlite:///{tmp_path / 'slo.db'}"
    (tmp_path / "shop_with_slos.py").write_text(
        textwrap.dedent(
            f"""\
            from choreograph import App
            from choreograph.observe.slo import SLO
            from choreograph.examples.shop import app as shop

            app = App("shop", broker={url!r})
            for name, service in shop.app.services.items():
                app.service(name).handlers.extend(service.handlers)
            app.declare(
                SLO.success_rate("reserve", target=0.99, groups=["inventory.reserve-stock"]),
                SLO.completion("orders-finish", start="shop.order.placed",
                               ends=["shop.order.completed", "shop.order.cancelled"], within=3600.0, target=0.99),
            )
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    app: App = shop.app
    app.configure_broker(url)
    await app.start()
    try:
        for i in range(9):
            await app.publish(order(i), key=f"o{i}")
        await app.publish(order(9, customer="poison"), key="o9")
        await wait_until(lambda: notified(app) == 9 and app.stats()["inventory.reserve-stock"].dead_letters == 1, 30)
    finally:
        await app.close()
    # When `choreograph slo` runs
    result = await asyncio.to_thread(
        CliRunner().invoke, observe_cli(), ["slo", "shop_with_slos:app"], env={"COLUMNS": "220"}
    )
    # Then the success rate is 9 of 10 in every window, burning the 1% budget 10x
    assert result.exit_code == 0, result.output
    assert "SLI 90.000%" in result.output
    assert "10.00x" in result.output
