"""Schema governance in the runtime: validation on publish and consume, incompatible versions, upcasting."""

from __future__ import annotations

from pathlib import Path

import pytest

from choreograph import App, ConsumerConfig, Context, Event, Record, encode
from choreograph.brokers.memory import MemoryBroker
from choreograph.core.envelope import Envelope
from choreograph.schema import IncompatibleSchema, SchemaRegistry, SchemaViolation, SqliteSchemaStore
from tests.conftest import wait_until

FAST = ConsumerConfig(fetch_timeout=0.02)


class PlacedV1(Event, type="s.order.placed", version=1):
    order_id: str
    total: int


class PlacedV2(Event, type="s.order.placed", version=2):
    order_id: str
    total_cents: int
    currency: str = "EUR"


class PlacedBroken(Event, type="s.order.placed", version=2):
    order_id: int  # narrowed from string: breaks BACKWARD
    total: int


async def test_invalid_payload_is_refused_on_publish_and_nothing_is_published() -> None:
    broker = MemoryBroker()
    app = App("s", broker=broker)
    bogus = PlacedV1.model_construct(order_id=42, total="lots")  # bypasses Pydantic validation
    with pytest.raises(SchemaViolation, match="order_id") as info:
        await app.publish(bogus)
    assert {error.path for error in info.value.errors} == {"order_id", "total"}
    assert await broker.topics() == []


async def test_incompatible_new_version_is_refused_before_anything_is_published(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/log.db"
    first = App("s", broker=url)
    await first.publish(PlacedV1(order_id="o1", total=5))
    await first.close()
    second = App("s", broker=url)
    with pytest.raises(IncompatibleSchema) as info:
        await second.publish(PlacedBroken(order_id=1, total=5))
    assert "order_id" in str(info.value)
    records = {t.name: t.records for t in await second.broker.topics()}  # type: ignore[attr-defined]
    await second.close()
    assert records == {"s.order.placed": 1}
    registry = SchemaRegistry(SqliteSchemaStore.from_url(url))
    assert registry.versions("s.order.placed") == [1]


async def test_v1_events_are_upcast_for_a_v2_consumer() -> None:
    broker = MemoryBroker()
    app = App("s", broker=broker, consumer=FAST, register_schemas=False)
    app.upcasters.register(
        "s.order.placed", 1, 2, lambda data: {"order_id": data["order_id"], "total_cents": data["total"] * 100}
    )
    got: list[PlacedV2] = []

    @app.service("billing").on(PlacedV2)
    async def bill(event: PlacedV2, ctx: Context) -> None:
        got.append(event)

    old = Envelope.for_event(PlacedV1(order_id="o1", total=3), source="legacy", key="o1")
    await broker.publish("s.order.placed", [Record(encode(old), "o1")])
    await app.start()
    await wait_until(lambda: len(got) == 1)
    await app.stop()
    assert got == [PlacedV2(order_id="o1", total_cents=300, currency="EUR")]


async def test_invalid_event_on_the_wire_is_dead_lettered_as_schema_after_one_attempt() -> None:
    broker = MemoryBroker()
    app = App("s", broker=broker, consumer=FAST)
    calls = 0

    @app.service("billing").on(PlacedV1)
    async def bill(event: PlacedV1, ctx: Context) -> None:
        nonlocal calls
        calls += 1

    bad = Envelope(id="0190f6d8-0000-7000-8000-0000000000ab", source="x", type="s.order.placed",
                   data={"order_id": "o1", "total": "many"}, schemaversion=1)  # fmt: skip
    await broker.publish("s.order.placed", [Record(encode(bad), "o1")])
    await app.start()
    await wait_until(lambda: app.stats()["billing.bill"].dead_letters == 1)
    await app.stop()
    (dead,) = await broker.dead_letters()
    assert (dead.reason, dead.attempts, calls) == ("schema", 1, 0)
    assert "total" in dead.error_message
