"""The forged-capture attack (issue 18): a forged PaymentCaptured that predicts the real capture's id.

Anyone who can write to the broker sees the InventoryReserved event, computes
the id the payment handler will derive for its PaymentCaptured (ids derived
from public values), and publishes a 1-cent capture with that id first.
Without signatures the shop ships on the forged capture and drops the real
one as a duplicate; with signing on the forgery is dead-lettered (reason
``signature``) and the real capture, whose id is keyed with the payment
service's secret, is handled.
"""

from __future__ import annotations

from choreograph import Record, decode, encode
from choreograph.core.envelope import Envelope
from choreograph.core.ids import derived_id
from choreograph.examples.shop.events import InventoryReserved, PaymentCaptured
from choreograph.observe.metrics import install_metrics
from choreograph.security import KeyRing, Security
from choreograph.testing import TestApp
from tests.unit.security.conftest import PaymentStep, payment_step


async def attack(step: PaymentStep) -> Envelope:
    """Publish the reservation (as inventory) and, before anything handles it, the forged capture."""
    reserved = await step.app.publish(
        InventoryReserved(order_id="o-1", total_cents=12_999), key="o-1", source="inventory"
    )
    group = step.app.services["payment"].handlers[0].group
    forged = Envelope(
        id=derived_id(reserved.id, group, 0),  # the id the payment handler derives for its first output
        source="payment",
        type=PaymentCaptured.event_type(),
        data={"order_id": "o-1", "amount_cents": 1},
        correlationid=reserved.correlationid,
        causationid=reserved.id,
        partitionkey="o-1",
        schemaversion=1,
    )
    await step.broker.publish(PaymentCaptured.topic(), [Record(encode(forged), "o-1")])
    return forged


async def test_without_signatures_the_forged_capture_ships_the_order_and_the_real_one_is_dropped() -> None:
    # Given the payment step with no security, and the attack in the log before the services run
    step = payment_step(None)
    await attack(step)
    # When the services run
    async with TestApp(step.app, raise_on_dead_letter=False) as t:
        await t.drain()
    # Then the order shipped on the 1-cent capture and the real one was taken for a duplicate
    assert step.shipped == [("o-1", 1)]


async def test_with_signing_on_the_forged_capture_is_dead_lettered_and_the_real_one_is_handled(ring: KeyRing) -> None:
    # Given the payment step signing with each service's key
    step = payment_step(Security(keys=ring))
    metrics = install_metrics(step.app)
    forged = await attack(step)
    # When the services run
    async with TestApp(step.app, raise_on_dead_letter=False) as t:
        await t.drain()
        letters = t.dead_letters
        captures = [decode(r.value) for r in await step.broker.read(PaymentCaptured.topic(), limit=10)]
    # Then the forgery is dead-lettered with reason "signature", and counted, and the order ships on the real amount
    assert [(d.event_id, d.reason) for d in letters] == [(forged.id, "signature")]
    group = step.app.services["shipping"].handlers[0].group
    assert f'choreograph_dead_letters_total{{group="{group}",reason="signature"}} 1.0' in metrics.render().decode()
    assert step.shipped == [("o-1", 12_999)]
    # And the real capture's id is not the predictable one
    real = [env for env in captures if env.extensions.get("signature")]
    assert len(real) == 1 and real[0].id != forged.id


async def test_a_forgery_signed_with_the_attackers_own_key_is_dead_lettered(ring: KeyRing) -> None:
    # Given an attacker holding a key the shop does not trust, signing a capture in payment's name
    from choreograph.security import new_key
    from choreograph.security.signing import sign

    step = payment_step(Security(keys=ring))
    reserved = await step.app.publish(InventoryReserved(order_id="o-2", total_cents=500), key="o-2", source="inventory")
    rogue = KeyRing([new_key("payment")])
    forged = sign(
        rogue,
        [
            Envelope(
                id="f-1",
                source="payment",
                type=PaymentCaptured.event_type(),
                data={"order_id": "o-2", "amount_cents": 1},
                partitionkey="o-2",
                causationid=reserved.id,
                schemaversion=1,
            )
        ],
    )[0]
    await step.broker.publish(PaymentCaptured.topic(), [Record(encode(forged), "o-2")])
    # When the services run
    async with TestApp(step.app, raise_on_dead_letter=False) as t:
        await t.drain()
        letters = t.dead_letters
    # Then it is refused as signed by an unknown key, and the real capture ships
    assert [(d.event_id, d.reason) for d in letters] == [("f-1", "signature")]
    assert "unknown key" in letters[0].error_message
    assert step.shipped == [("o-2", 500)]


async def test_keyed_output_ids_are_the_same_on_a_rerun(ring: KeyRing) -> None:
    # Given the same reservation handled twice (a crash before the commit re-runs the handler)
    from choreograph.security.signing import keyed_id

    secret = ring.signing_key("payment").id_secret()  # type: ignore[union-attr]
    public = derived_id("0190f5c4-0000-7000-8000-000000000001", "payment.capture_payment", 0)
    # Then the keyed id is deterministic, keeps the parent's time, and differs from the public derivation
    assert keyed_id(secret, public) == keyed_id(secret, public)
    assert keyed_id(secret, public) != public
    assert keyed_id(secret, public)[:13] == public[:13]
    assert keyed_id(ring.signing_key("shipping").id_secret(), public) != keyed_id(secret, public)  # type: ignore[union-attr]
