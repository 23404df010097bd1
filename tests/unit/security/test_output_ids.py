"""The id a handler reads back from ``ctx.publish`` is the id sent, keyed when signing is on."""

from __future__ import annotations

from pathlib import Path

import pytest

from choreograph import App, Context, decode
from choreograph.brokers.memory import MemoryBroker
from choreograph.core.clock import FakeClock
from choreograph.core.envelope import Envelope
from choreograph.core.ids import derived_id
from choreograph.examples.shop.events import InventoryReserved, PaymentCaptured
from choreograph.security import KeyRing, Security, new_key
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


async def test_a_transactional_handlers_output_ships_with_the_id_ctx_publish_returned(tmp_path: Path) -> None:
    pytest.importorskip("aiosqlite")
    from sqlalchemy.ext.asyncio import create_async_engine

    from choreograph.outbox import Outbox, Relay, Transactional, TransactionalHandlers, db_session, install
    from tests.outbox.model import Charged, Moved, read_log

    # Given a signing app whose handler stages its output through the outbox, keeping what ctx.publish returned
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/service.db")
    await install(engine)
    ring = KeyRing([new_key("shop"), new_key("payments")])
    app = App("shop", security=Security(keys=ring))
    app.use(TransactionalHandlers(Outbox(app)))
    returned: list[str] = []

    @app.service("payments").on(Moved, options=[Transactional(engine)], concurrency=1)
    async def charge(event: Moved, ctx: Context) -> None:
        db_session(ctx)
        returned.append(ctx.publish(Charged(key=event.key, n=event.n)).id)

    try:
        async with TestApp(app) as test:
            # When an event is handled and the relay ships the output
            await test.app.publish(Moved(key="a", n=1), key="a")
            await test.drain()
            assert await Relay(engine, test.broker).ship_once() == 1
            [charged] = await read_log(test.broker, Charged.topic())
        # Then the shipped id is the one the handler saw, keyed once (not keyed again at staging)
        key = ring.signing_key("payments")
        assert key is not None and charged.causationid is not None
        group = app.services["payments"].handlers[0].group
        assert returned == [charged.id] == [keyed_id(key.id_secret(), derived_id(charged.causationid, group, 0))]
    finally:
        await engine.dispose()
