"""The publish and consume policy, enforced on consume through the verified signer."""

from __future__ import annotations

from pathlib import Path

import pytest

from choreograph import Record, encode
from choreograph.core.envelope import Envelope
from choreograph.core.errors import ConfigurationError
from choreograph.examples.shop.events import InventoryReserved, PaymentCaptured
from choreograph.security import AccessPolicy, KeyRing, Security
from choreograph.security.signing import sign
from choreograph.testing import TestApp
from tests.unit.security.conftest import payment_step

SHOP_POLICY = """
[services.inventory]
publish = ["shop.inventory.*"]
consume = ["shop.order.placed"]

[services.payment]
publish = ["shop.payment.captured", "shop.payment.declined"]
consume = ["shop.inventory.reserved"]

[services.shipping]
publish = ["shop.order.shipped"]
consume = ["shop.payment.captured"]
"""


def test_a_policy_file_reads_rights_with_prefix_patterns(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(SHOP_POLICY)
    policy = AccessPolicy.load(path)
    assert policy.may_publish("inventory", "shop.inventory.reserved")
    assert not policy.may_publish("inventory", "shop.payment.captured")
    assert policy.may_consume("shipping", "shop.payment.captured")
    assert not policy.may_consume("shipping", "shop.inventory.reserved")
    assert not policy.may_publish("stranger", "shop.inventory.reserved")
    assert AccessPolicy.load(_write(tmp_path, policy.to_toml())) == policy


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "again.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text", ["services = 1", "[services.payment]\npublish = 'x'", "[services.payment]\nwrite = ['x']", "[services"]
)
def test_a_bad_policy_file_is_a_clear_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigurationError, match="policy file"):
        AccessPolicy.load(_write(tmp_path, text))


async def test_an_event_its_signer_may_not_publish_is_dead_lettered_unauthorized(ring: KeyRing, tmp_path: Path) -> None:
    # Given the shop's policy, and the inventory service (a valid key) signing a PaymentCaptured
    policy = AccessPolicy.load(_write(tmp_path, SHOP_POLICY))
    step = payment_step(Security(keys=ring, policy=policy))
    rogue = sign(
        ring,
        [
            Envelope(
                id="r-1",
                source="inventory",
                type=PaymentCaptured.event_type(),
                data={"order_id": "o-9", "amount_cents": 1},
                partitionkey="o-9",
                schemaversion=1,
            )
        ],
    )
    await step.broker.publish(PaymentCaptured.topic(), [Record(encode(rogue[0]), "o-9")])
    await step.app.publish(InventoryReserved(order_id="o-1", total_cents=700), key="o-1", source="inventory")
    # When the services run
    async with TestApp(step.app, raise_on_dead_letter=False) as t:
        await t.drain()
        letters = t.dead_letters
    # Then the capture signed by inventory is refused, and the legitimate flow goes through
    assert [(d.event_id, d.reason) for d in letters] == [("r-1", "unauthorized")]
    assert step.shipped == [("o-1", 700)]


async def test_a_signer_cannot_speak_for_another_source(ring: KeyRing) -> None:
    # Given an event claiming source "payment" but signed with inventory's key
    step = payment_step(Security(keys=ring))
    inventory_key = ring.signing_key("inventory")
    assert inventory_key is not None
    only_inventory = KeyRing([inventory_key])
    body = Envelope(
        id="x-1",
        source="inventory",
        type=PaymentCaptured.event_type(),
        data={"order_id": "o-3", "amount_cents": 1},
        partitionkey="o-3",
        schemaversion=1,
    )
    (signed,) = sign(only_inventory, [body])
    relabelled = signed.replace(source="payment")  # changes a signed attribute: the signature no longer holds
    await step.broker.publish(PaymentCaptured.topic(), [Record(encode(relabelled), "o-3")])
    async with TestApp(step.app, raise_on_dead_letter=False) as t:
        await t.drain()
        letters = t.dead_letters
    assert [d.reason for d in letters] == ["signature"] and step.shipped == []


async def test_unsigned_events_are_accepted_only_from_listed_sources(ring: KeyRing) -> None:
    # Given an app accepting unsigned events from "legacy" only
    step = payment_step(Security(keys=ring, accept_unsigned=frozenset({"legacy"})))
    for n, source in enumerate(["legacy", "payment"]):
        unsigned = Envelope(
            id=f"u-{n}",
            source=source,
            type=PaymentCaptured.event_type(),
            data={"order_id": f"u-{n}", "amount_cents": 5},
            partitionkey=f"u-{n}",
            schemaversion=1,
        )
        await step.broker.publish(PaymentCaptured.topic(), [Record(encode(unsigned), f"u-{n}")])
    async with TestApp(step.app, raise_on_dead_letter=False) as t:
        await t.drain()
        letters = t.dead_letters
    assert step.shipped == [("u-0", 5)]
    assert [(d.event_id, d.reason) for d in letters] == [("u-1", "signature")]


def test_a_handler_on_a_topic_its_service_may_not_consume_is_refused_at_start(ring: KeyRing) -> None:
    policy = AccessPolicy.of(
        payment=(["shop.payment.*"], []), shipping=(["shop.order.shipped"], ["shop.payment.captured"])
    )
    step = payment_step(Security(keys=ring, policy=policy))
    with pytest.raises(ConfigurationError, match=r"not let service 'payment' consume 'shop\.inventory\.reserved'"):
        step.app.pipeline_for(step.app.services["payment"].handlers[0])


def test_the_least_policy_derived_from_the_app() -> None:
    step = payment_step(None)
    policy = AccessPolicy.from_topology(step.app.topology())
    assert policy.may_consume("payment", "shop.inventory.reserved")
    assert policy.may_consume("shipping", "shop.payment.captured")
    assert not policy.may_consume("payment", "shop.payment.captured")
