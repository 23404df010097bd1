"""``TestApp.published()`` reads encrypted events in clear with the app's key store; ``envelopes()`` as sent."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from choreograph import App, Context
from choreograph.brokers.memory import MemoryBroker
from choreograph.core.clock import FakeClock
from choreograph.security import ENCRYPTED, Encryption, KeyRing, MemoryKeyStore, Security, new_key
from choreograph.testing import TestApp
from tests.unit.security.conftest import FAST
from tests.unit.security.test_encryption import AddressChanged, CardCharged, build


async def test_published_decrypts_handler_outputs_and_app_publishes() -> None:
    # Given an app that signs and encrypts CardCharged.card and the whole AddressChanged (a handler output)
    ring = KeyRing([new_key("shop"), new_key("billing"), new_key("mail")])
    app, _ = build(MemoryKeyStore(), ring=ring)
    async with TestApp(app) as t:
        # When a card is charged and the app drains
        await t.publish(CardCharged(order_id="o-1", card="4111111111111111", amount_cents=500), key="c-1")
        await t.drain()
        # Then published() gives both in clear
        assert t.published(CardCharged) == [CardCharged(order_id="o-1", card="4111111111111111", amount_cents=500)]
        assert t.published(AddressChanged) == [AddressChanged(street="1 1111 st", city="Lyon")]
        # And envelopes() keeps them as sent: encrypted and signed
        [changed] = t.envelopes(AddressChanged.topic())
        assert changed.data == ENCRYPTED and changed.extensions.get("signature")
        assert t.envelopes(CardCharged.topic())[0].data["card"] == ENCRYPTED


async def test_an_output_whose_key_was_forgotten_is_kept_as_sent() -> None:
    # Given an encrypting app whose mail service forgets the customer's key once it has read the address
    store = MemoryKeyStore()
    app = App(
        "shop",
        broker=MemoryBroker(clock=FakeClock()),
        consumer=FAST,
        security=Security(encryption=Encryption.of(store, [AddressChanged])),
    )

    @app.service("billing").on(CardCharged)
    async def record(event: CardCharged, ctx: Context) -> AddressChanged:
        return AddressChanged(street="1 rue", city="Lyon")

    @app.service("mail").on(AddressChanged)
    async def mail(event: AddressChanged, ctx: Context) -> None:
        await store.forget("c-1")  # crypto-shredding, before the test reads what billing published

    async with TestApp(app) as t:
        # When a card is charged for c-1 and the app drains
        await t.publish(CardCharged(order_id="o-1", card="4111111111111111", amount_cents=500), key="c-1")
        await t.drain()
        # Then the address is still listed as sent, and cannot be read in clear any more
        [changed] = t.envelopes(AddressChanged.topic())
        assert changed.data == ENCRYPTED
        with pytest.raises(ValidationError):
            t.published(AddressChanged)
