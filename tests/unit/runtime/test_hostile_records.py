"""No record stops a consumer: bad ones become dead letters with a reason, good ones behind them keep their order."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any

import orjson

from choreograph import App, ConsumerConfig, Context, Event, Record, encode
from choreograph.brokers.memory import MemoryBroker, MemorySubscription
from choreograph.core.broker import Delivery, Position
from choreograph.core.envelope import Envelope
from choreograph.core.ids import new_id
from choreograph.observe.metrics import SKIPPED, install_metrics
from tests.conftest import wait_until

EARLIEST = Position.earliest()
FAST = ConsumerConfig(fetch_timeout=0.02, batch_size=7, restart_delay=0.01, max_restart_delay=0.05)
FAULT = "the backend could not translate this record: header 'x' is not UTF-8"


class PlacedV2(Event, type="h.placed", version=2):
    order_id: str
    seq: int


class Shipped(Event, type="h.shipped", topic="h.placed"):
    order_id: str
    seq: int


class Out(Event, type="h.out"):
    order_id: str


class FaultySubscription:
    """A memory subscription whose records keyed ``native`` come as the backend's untranslatable records."""

    def __init__(self, inner: MemorySubscription) -> None:
        self._inner = inner

    async def fetch(self, max_records: int, timeout: float) -> list[Delivery]:
        batch = await self._inner.fetch(max_records, timeout)
        return [dataclasses.replace(d, fault=FAULT) if d.key == "native" else d for d in batch]

    async def settle(self, settlement: Any) -> None:
        await self._inner.settle(settlement)

    async def seen(self, keys: Any) -> set[str]:
        return await self._inner.seen(keys)

    async def close(self) -> None:
        await self._inner.close()


class FaultyBroker(MemoryBroker):
    """The memory broker, as a backend that hands over records it cannot translate (``Delivery.fault``)."""

    async def subscribe(  # type: ignore[override]
        self, topic: str, group: str, *, start: Position = EARLIEST
    ) -> FaultySubscription:
        return FaultySubscription(await super().subscribe(topic, group, start=start))


def raw(doc: dict[str, Any]) -> bytes:
    return orjson.dumps({"id": new_id(), "source": "x", "specversion": "1.0", "type": "h.placed", **doc})


def good(key: str, seq: int, version: int = 2) -> Record:
    envelope = Envelope(id=new_id(), source="x", type="h.placed", data={"order_id": key, "seq": seq})
    return Record(encode(envelope.replace(partitionkey=key, schemaversion=version)), key)


BAD: list[tuple[Record, str]] = [
    (Record(b"\xff\xfe not utf-8", "k0"), "decode"),
    (Record(b'{"id": "x", "type": ', "k1"), "decode"),
    (Record(raw({"schemaversion": "\u00b9", "data": {"order_id": "k0", "seq": 0}}), "k0"), "decode"),
    (Record(raw({"schemaversion": "\u0663", "data": {"order_id": "k1", "seq": 0}}), "k1"), "decode"),
    (Record(raw({"schemaversion": "9" * 5000, "data": {"order_id": "k2", "seq": 0}}), "k2"), "decode"),
    (Record(raw({"schemaversion": -1, "data": {"order_id": "k0", "seq": 0}}), "k0"), "decode"),
    (Record(raw({"schemaversion": True, "data": {}}), "k1"), "decode"),
    (Record(raw({"schemaversion": 1, "data": {"order_id": "k2"}}), "k2"), "schema"),  # the upcaster fails on it
    (Record(raw({"schemaversion": 2, "data": {"order_id": "k0"}}), "k0"), "schema"),
    (Record(b"native bytes \x00\xff", "native", {"x": "y"}), "decode"),  # Delivery.fault
]


async def test_bad_records_are_dead_lettered_with_a_reason_and_good_ones_keep_their_key_order() -> None:
    # Given a topic where good records of three keys are interleaved with every kind of bad record
    broker = FaultyBroker(partitions=2)
    app = App("h", broker=broker, consumer=FAST)

    @app.upcasters.step("h.placed", 1, 2)
    def add_seq(data: dict[str, Any]) -> dict[str, Any]:
        return {"order_id": data["order_id"], "seq": data["seq_v1"]}  # KeyError on a v1 payload without it

    handled: dict[str, list[int]] = defaultdict(list)

    @app.service("ship").on(PlacedV2)
    async def ship(event: PlacedV2, ctx: Context) -> None:
        handled[event.order_id].append(event.seq)

    records: list[Record] = []
    for seq in range(len(BAD)):
        records.extend(good(f"k{k}", seq) for k in range(3))
        records.append(BAD[seq][0])
    v1 = raw({"schemaversion": 1, "partitionkey": "k1", "data": {"order_id": "k1", "seq_v1": 99}})
    records.append(Record(v1, "k1"))  # upcast to v2
    await broker.publish("h.placed", records)

    # When the handler's consumer runs
    await app.start()
    stats = app.stats()["ship.ship"]
    await wait_until(lambda: stats.handled == 3 * len(BAD) + 1 and stats.dead_letters == len(BAD))
    await app.stop()

    # Then it never stopped, handled every good record in its key's order, and dead-lettered each bad one
    assert stats.crashes == 0
    assert handled == {"k0": list(range(len(BAD))), "k1": [*range(len(BAD)), 99], "k2": list(range(len(BAD)))}
    letters = await broker.dead_letters()
    by_value = {letter.value: letter for letter in letters}
    assert sorted(by_value) == sorted(record.value for record, _ in BAD)
    for record, reason in BAD:
        letter = by_value[record.value]
        assert (letter.reason, letter.key, letter.group) == (reason, record.key, "ship.ship")
        assert letter.error_message
    native = by_value[b"native bytes \x00\xff"]
    assert (native.error_message, native.error_type, dict(native.headers)) == (FAULT, "DecodeError", {"x": "y"})
    upcast = by_value[BAD[7][0].value]
    assert "upcaster h.placed v1 -> v2 failed" in upcast.error_message and "KeyError" in upcast.error_message


async def test_other_types_on_a_shared_topic_are_skipped_acknowledged_and_counted_never_handled() -> None:
    # Given a topic shared by two types, a third unknown type whose payload fits both models,
    # a lenient handler of each type and a strict one
    broker = MemoryBroker(partitions=2)
    app = App("h", broker=broker, consumer=FAST)
    metrics = install_metrics(app)
    seen: dict[str, list[str]] = defaultdict(list)
    svc = app.service("svc")

    @svc.on(PlacedV2)
    async def placed(event: PlacedV2, ctx: Context) -> None:
        seen["placed"].append(ctx.envelope.type)

    @svc.on(Shipped)
    async def shipped(event: Shipped, ctx: Context) -> None:
        seen["shipped"].append(ctx.envelope.type)

    @svc.on(PlacedV2, name="strict", unknown_types="dead_letter")
    async def strict(event: PlacedV2, ctx: Context) -> None:
        seen["strict"].append(ctx.envelope.type)

    types = ["h.placed", "h.shipped", "h.unknown", "h.placed", "h.shipped", "h.unknown"]
    envelopes = [
        Envelope(id=new_id(), source="x", type=t, data={"order_id": "o", "seq": i}, partitionkey="o")
        for i, t in enumerate(types)
    ]
    await broker.publish("h.placed", [Record(encode(env), "o") for env in envelopes])

    # When the three handlers have settled everything
    await app.start()
    stats = app.stats()
    await wait_until(lambda: stats["svc.strict"].dead_letters == 4)
    await wait_until(lambda: stats["svc.placed"].skipped == 4 and stats["svc.shipped"].skipped == 4)
    await app.stop()

    # Then each handled only its own type, skipped the others without dead letters, and the strict one
    # dead-lettered them with reason "type"
    assert seen == {"placed": ["h.placed"] * 2, "shipped": ["h.shipped"] * 2, "strict": ["h.placed"] * 2}
    assert (stats["svc.placed"].handled, stats["svc.placed"].dead_letters) == (2, 0)
    assert (stats["svc.shipped"].handled, stats["svc.shipped"].dead_letters) == (2, 0)
    assert {(d.group, d.reason, d.event_type) for d in await broker.dead_letters()} == {
        ("svc.strict", "type", "h.shipped"),
        ("svc.strict", "type", "h.unknown"),
    }
    value = metrics.registry.get_sample_value
    assert value(SKIPPED, {"group": "svc.placed", "reason": "type"}) == 4
    assert value(SKIPPED, {"group": "svc.shipped", "reason": "type"}) == 4
    # acknowledged: nothing left for the groups; the inbox holds only what was handled
    assert all(row.lag == 0 for row in await broker.lag())
    member = await broker.subscribe("h.placed", "svc.placed")
    assert await member.seen([e.dedupe_key for e in envelopes]) == {envelopes[0].dedupe_key, envelopes[3].dedupe_key}
    assert await member.fetch(10, 0) == []
    await member.close()


async def test_an_output_too_large_to_send_dead_letters_the_event_instead_of_stopping_the_consumer() -> None:
    broker = MemoryBroker(partitions=1)
    app = App("h", broker=broker, consumer=FAST)

    @app.service("big").on(PlacedV2)
    async def big(event: PlacedV2, ctx: Context) -> Out:
        return Out(order_id="x" * (2 * 1024 * 1024) if event.seq == 0 else "ok")

    await broker.publish("h.placed", [good("k", 0), good("k", 1)])
    await app.start()
    stats = app.stats()["big.big"]
    await wait_until(lambda: stats.dead_letters == 1 and stats.handled == 1)
    await app.stop()
    (letter,) = await broker.dead_letters()
    assert (letter.reason, letter.error_type, stats.crashes, stats.published) == ("error", "EncodeError", 0, 1)
