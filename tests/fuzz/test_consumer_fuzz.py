"""Fuzz the consumer's read and handle path with a real App, Service, handler and the memory broker.

Each example is a batch of deliveries: good events of a few keys, interleaved
with arbitrary bytes, envelope-like JSON with odd attributes and versions,
events of other types, redeliveries of a good event (duplicates) and records
the backend could not translate (``Delivery.fault``), with arbitrary headers.
Every delivery must end as handled, skipped, duplicate or a dead letter with a
reason, in exactly one place of the settlement, without an exception; the
good events must be handled in their key's order.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from choreograph import App, ConsumerConfig, Context, Event, Record
from choreograph.brokers.memory import MemoryBroker
from choreograph.core.broker import Delivery
from choreograph.runtime.consumer import Consumer, HandlerStats
from tests.fuzz.budget import fed, fuzz_settings
from tests.fuzz.test_codec_fuzz import documents, json_values, versions

TOPIC = "fz.placed"
KEYS = ["a", "b", "c"]
REASONS = {"decode", "schema", "type"}


class Placed(Event, type="fz.placed", version=2):
    key: str
    seq: int


@dataclass
class Item:
    """One delivery of a batch, and what the test knows of it."""

    value: bytes
    key: str | None
    headers: dict[str, str]
    fault: str | None = None
    good: tuple[str, int] | None = None  # (key, seq) of a good event


GOOD_SOURCE = "fz-good"  # a source no generated junk document has (their sources are at most 20 characters of text)


def envelope_bytes(
    event_id: str, key: str, seq: int, *, event_type: str = "fz.placed", version: Any = 2, source: str = "fz"
) -> bytes:
    doc = {"specversion": "1.0", "id": event_id, "source": source, "type": event_type, "partitionkey": key}
    return orjson.dumps({**doc, "schemaversion": version, "data": {"key": key, "seq": seq}})


@st.composite
def batches(draw: st.DrawFn) -> list[Item]:
    items: list[Item] = []
    seq = 0
    goods: list[bytes] = []
    for kind in draw(st.lists(st.integers(0, 7), min_size=1, max_size=25)):
        headers = draw(st.dictionaries(st.text(max_size=8), st.text(max_size=16), max_size=3))
        key = draw(st.sampled_from(KEYS))
        if kind <= 2:  # a good event (v2, or v1 that upcasts)
            seq += 1
            version = draw(st.sampled_from([2, 1, "2", None]))
            value = envelope_bytes(f"good-{seq}", key, seq, version=version, source=GOOD_SOURCE)
            goods.append(value)
            items.append(Item(value, key, headers, good=(key, seq)))
        elif kind == 3:
            items.append(Item(draw(st.binary(max_size=80)), draw(st.none() | st.text(max_size=8)), headers))
        elif kind == 4:
            items.append(Item(orjson.dumps(draw(documents())), key, headers))
        elif kind == 5:  # our type or another, with an arbitrary version or payload
            event_type = draw(st.sampled_from(["fz.placed", "fz.other", "fz.placed\n", "FZ.PLACED"]))
            value = envelope_bytes(f"odd-{len(items)}", key, -1, event_type=event_type, version=draw(versions))
            if draw(st.booleans()):
                doc = orjson.loads(value)
                doc["data"] = draw(json_values)
                value = orjson.dumps(doc)
            items.append(Item(value, key, headers))
        elif kind == 6 and goods:  # a redelivery of a good event: a duplicate
            items.append(Item(draw(st.sampled_from(goods)), key, headers))
        else:  # the backend could not translate its native record
            items.append(Item(draw(st.binary(max_size=40)), key, headers, fault=draw(st.text(min_size=1, max_size=40))))
    return items


class Harness:
    """A real App with one handler, its consumer and a memory subscription, kept across examples."""

    def __init__(self) -> None:
        self.broker = MemoryBroker(partitions=1)
        self.app = App("fz", broker=self.broker, consumer=ConsumerConfig(batch_size=50))
        self.handled: list[tuple[str, int]] = []
        """(key, seq) of the good events handled, in order."""

        @self.app.upcasters.step("fz.placed", 1, 2)
        def v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
            return {"key": data["key"], "seq": int(data["seq"])}  # raises on many payloads: dead letter "schema"

        @self.app.service("svc").on(Placed)
        async def handle(event: Placed, ctx: Context) -> None:
            if ctx.envelope.source == GOOD_SOURCE:
                self.handled.append((event.key, event.seq))

        self.consumer: Consumer | None = None

    async def start(self) -> None:
        await self.app.check_schemas()
        (spec,) = self.app.handlers
        self.consumer = self.app.pipeline_for(spec)
        self.subscription = await self.broker.subscribe(TOPIC, spec.group)

    async def run(self, items: list[Item]) -> None:
        assert self.consumer is not None
        fed("consumer read/handle deliveries", len(items))
        self.handled.clear()
        deliveries = [
            Delivery(TOPIC, 0, offset, item.value, item.key, item.headers, fault=item.fault)
            for offset, item in enumerate(items)
        ]
        tally = HandlerStats()
        settlement = await self.consumer.handle_batch(self.subscription, deliveries, tally)

        # every delivery settled exactly once, never retried (the handler never fails)
        settled = [(d.partition, d.offset) for d in settlement.deliveries()]
        assert sorted(settled) == [(0, offset) for offset in range(len(items))]
        assert not settlement.retries
        for delivery, letter in settlement.dead_letters:
            assert letter.reason in REASONS and letter.error_message, letter
            assert (letter.value, dict(letter.headers), letter.key) == (
                delivery.value,
                dict(delivery.headers),
                delivery.key,
            )
        assert tally.handled + tally.duplicates + tally.skipped + tally.dead_letters == len(items)
        assert tally.dead_letters == len(settlement.dead_letters) and tally.crashes == 0

        # every good event handled once (duplicates dropped), in its key's order
        dead = {d.offset for d, _ in settlement.dead_letters}
        good = [item.good for offset, item in enumerate(items) if item.good is not None]
        assert not {offset for offset, item in enumerate(items) if item.good is not None} & dead
        tracked = self.handled
        assert sorted(tracked) == sorted(good)
        for key in KEYS:
            assert [s for k, s in tracked if k == key] == [s for k, s in good if k == key]
        for item in items:
            if item.fault is not None:
                assert any(
                    letter.value == item.value and letter.reason == "decode" for _, letter in settlement.dead_letters
                )


def test_every_delivery_is_handled_skipped_duplicate_or_dead_lettered_with_a_reason_in_key_order() -> None:
    with asyncio.Runner() as runner:
        harness = Harness()
        runner.run(harness.start())

        @fuzz_settings(0.1)
        @given(items=batches())
        def check(items: list[Item]) -> None:
            runner.run(harness.run(items))

        check()
        runner.run(harness.app.close())


@st.composite
def published(draw: st.DrawFn) -> list[Record]:
    records: list[Record] = []
    for kind in draw(st.lists(st.integers(0, 3), min_size=1, max_size=12)):
        key = draw(st.sampled_from(KEYS))
        headers = draw(st.dictionaries(st.text(max_size=6), st.text(max_size=10), max_size=2))
        if kind == 0:
            records.append(Record(draw(st.binary(max_size=60)), key, headers))
        elif kind == 1:
            records.append(Record(orjson.dumps(draw(documents())), key, headers))
        else:
            value = envelope_bytes(f"e{len(records)}", key, len(records), source=GOOD_SOURCE)
            records.append(Record(value, key, headers))
    return records


def test_a_running_app_stays_up_and_settles_everything_published_on_its_topic() -> None:
    # End to end: published records, the consumer loop, settle, the memory broker's dead-letter store.
    with asyncio.Runner() as runner:

        @fuzz_settings(0.005, ci=40)
        @given(records=published())
        def check(records: list[Record]) -> None:
            runner.run(run_app(records))

        check()


async def run_app(records: list[Record]) -> None:
    fed("running app records", len(records))
    broker = MemoryBroker(partitions=2)
    app = App("fz", broker=broker, consumer=ConsumerConfig(batch_size=5, fetch_timeout=0.01))
    order: dict[str, list[int]] = defaultdict(list)

    @app.service("svc").on(Placed)
    async def handle(event: Placed, ctx: Context) -> None:
        if ctx.envelope.source == GOOD_SOURCE:
            order[event.key].append(event.seq)

    await broker.publish(TOPIC, records)
    await app.start()
    stats = app.stats()["svc.handle"]
    async with asyncio.timeout(10):
        while stats.handled + stats.duplicates + stats.skipped + stats.dead_letters < len(records):
            await asyncio.sleep(0.001)
    await app.stop()
    assert stats.crashes == 0 and stats.retries == 0
    assert all(letter.reason in REASONS and letter.error_message for letter in await broker.dead_letters())
    good = [
        (r.key, n)
        for n, r in enumerate(records)
        if r.value == envelope_bytes(f"e{n}", r.key or "", n, source=GOOD_SOURCE)
    ]
    for key in KEYS:
        assert order[key] == [n for k, n in good if k == key]
    assert all(row.lag == 0 for row in await broker.lag())
    await app.close()
