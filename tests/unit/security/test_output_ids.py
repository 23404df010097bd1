"""The id a handler reads back from ``ctx.publish`` is the id sent, keyed when signing is on."""

from __future__ import annotations

from choreograph import App, Context, decode
from choreograph.brokers.memory import MemoryBroker
from choreograph.core.clock import FakeClock
from choreograph.core.envelope import Envelope
from choreograph.core.ids import derived_id
from choreograph.examples.shop.events import InventoryReserved, PaymentCaptured
from choreograph.security import KeyRing, Security
from choreograph.security.signing import keyed_id
from choreograph.testing import TestApp
from tests.unit.security.conftest import FAST


def capturing_app(security: Security | None) -> tuple[App, list[str]]:
    returned: list[str] = []
    app = App("shop", broker=MemoryBroker(clock=FakeClock()), consumer=FAST, security=security)

    @app.service("payment").on(InventoryReserved)
    async def capture(event: InventoryReserved, ctx: Context) -> None:
        for cents in (event.total_cents, 1):
            returned.append(ctx.publish(PaymentCaptured(order_id=event.order_id, amount_cents=cents)).id)

    return app, returned


async def sent_ids(app: App) -> list[str]:
    broker = app.broker
    assert isinstance(broker, MemoryBroker)
    return [decode(r.value).id for r in await broker.read(PaymentCaptured.topic(), limit=10)]


async def test_with_signing_on_the_id_a_handler_reads_back_is_the_keyed_id_sent(ring: KeyRing) -> None:
    # Given the payment service signing, whose handler keeps what ctx.publish returns
    app, returned = capturing_app(Security(keys=ring))
    # When an event is handled
    async with TestApp(app) as t:
        reserved = await t.app.publish(
            InventoryReserved(order_id="o-1", total_cents=500), key="o-1", source="inventory"
        )
        await t.drain()
        sent = await sent_ids(app)
    # Then the ids returned are the ids on the wire, keyed with payment's secret (not the public derived ids)
    group = app.services["payment"].handlers[0].group
    public = [derived_id(reserved.id, group, position) for position in (0, 1)]
    key = ring.signing_key("payment")
    assert key is not None
    assert returned == sent == [keyed_id(key.id_secret(), eid) for eid in public]
    assert not set(sent) & set(public)


async def test_without_signing_the_id_a_handler_reads_back_is_the_public_derived_id() -> None:
    # Given no security
    app, returned = capturing_app(None)
    # When an event is handled
    async with TestApp(app) as t:
        reserved = await t.app.publish(
            InventoryReserved(order_id="o-1", total_cents=500), key="o-1", source="inventory"
        )
        await t.drain()
        sent = await sent_ids(app)
    # Then the ids are derived from public values, as before
    group = app.services["payment"].handlers[0].group
    assert returned == sent == [derived_id(reserved.id, group, position) for position in (0, 1)]


async def test_sealing_twice_as_derived_does_not_key_an_id_the_context_keyed(ring: KeyRing) -> None:
    # Given an output id keyed through output_ids (as the consumer's Context does)
    security = Security(keys=ring)
    derive = security.output_ids("payment")
    assert derive is not None and security.output_ids("nobody") is None
    envelope = Envelope(id=derive(derived_id("parent", "g", 0)), source="payment", type="t", data={})
    # When a later stage (the outbox) seals it as a derived output
    sealed = await security.seal([envelope], derived=True)
    # Then the id is kept; a public derived id is still keyed
    assert sealed[0].id == envelope.id
    other = Envelope(id=derived_id("parent", "g", 1), source="payment", type="t", data={})
    assert (await security.seal([other], derived=True))[0].id != other.id
