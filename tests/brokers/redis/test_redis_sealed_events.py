"""Signed and encrypted events on a real redis-server: the App seals, the consumer opens, Redis keeps ciphertext."""

from __future__ import annotations

import uuid
from typing import Annotated

from choreograph import App, ConsumerConfig, Context, Event, Record, decode, encode
from choreograph.brokers.redis import RedisBroker
from choreograph.core.envelope import Envelope
from choreograph.core.errors import UnknownTopic
from choreograph.security import Encryption, KeyRing, MemoryKeyStore, Security, Sensitive, new_key
from tests.conftest import wait_until

from .server import RedisServer


class Charged(Event, type="sealed.card.charged"):
    order_id: str
    card: Annotated[str, Sensitive()]


class Receipted(Event, type="sealed.receipt.sent"):
    order_id: str
    last4: str


async def test_sealed_events_flow_through_redis_and_a_forgery_is_dead_lettered(redis_server: RedisServer) -> None:
    # Given an app on Redis signing with each service's key and encrypting card numbers
    url = f"redis://127.0.0.1:{redis_server.port}/0?prefix=sealed{uuid.uuid4().hex[:6]}"
    ring = KeyRing([new_key("shop"), new_key("billing")])
    security = Security(keys=ring, encryption=Encryption.of(MemoryKeyStore(), [Charged, Receipted]))
    app = App("shop", broker=url, consumer=ConsumerConfig(fetch_timeout=0.05), security=security)
    seen: list[tuple[str, str]] = []

    @app.service("billing").on(Charged)
    async def receipt(event: Charged, ctx: Context) -> Receipted:
        seen.append((event.order_id, event.card))
        return Receipted(order_id=event.order_id, last4=event.card[-4:])

    broker = app.broker
    assert isinstance(broker, RedisBroker)
    group = app.services["billing"].handlers[0].group
    await app.start()
    try:
        # When a charge is published, and a forged one is written straight to Redis
        await app.publish(Charged(order_id="o-1", card="4111111111111111"), key="c-1")
        forged = Envelope(id="f-1", source="shop", type=Charged.event_type(), data={"order_id": "o-2", "card": "1"})
        await broker.publish(Charged.topic(), [Record(encode(forged), "c-2")])

        async def settled() -> bool:
            try:
                receipts = await broker.read(Receipted.topic(), limit=10)
            except UnknownTopic:  # not written yet
                return False
            return len(receipts) == 1 and bool(await broker.dead_letters(group=group, limit=10))

        await wait_until(settled, timeout=20, what="the receipt and the forgery's dead letter")
        receipts = [decode(d.value) for d in await broker.read(Receipted.topic(), limit=10)]
        charges = [d.value for d in await broker.read(Charged.topic(), limit=10)]
        letters = await broker.dead_letters(group=group, limit=10)
    finally:
        await app.close()
    # Then the genuine charge was handled with the clear card, the forgery was dead-lettered
    assert seen == [("o-1", "4111111111111111")]
    assert [(d.event_id, d.reason) for d in letters] == [("f-1", "signature")]
    # And Redis holds only ciphertext, signed
    assert all(b"4111111111111111" not in value for value in charges)
    assert receipts[0].data == "<encrypted>" and receipts[0].extensions["signaturekey"].startswith("billing.")
