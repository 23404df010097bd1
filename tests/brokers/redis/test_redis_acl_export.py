"""The Redis ACL rules `choreograph export acl --format redis` writes, applied to a real redis-server.

Given the rules for a policy where ``payment`` publishes captures and
consumes reservations: payment publishes and consumes what it may, and the
server itself refuses a publish to a topic outside its rights (NOPERM).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from choreograph.brokers.redis import RedisBroker
from choreograph.core.broker import Record, Settlement
from choreograph.core.errors import ChoreographError
from choreograph.security import AccessPolicy
from choreograph.security.acl import redis_acl, redis_acl_text, topic_rights

from .server import RedisServer

TOPICS = {t: t for t in ("shop.inventory.reserved", "shop.payment.captured", "shop.order.shipped")}
POLICY = AccessPolicy.of(payment=(["shop.payment.*"], ["shop.inventory.reserved"]))


@pytest.fixture
async def setup(redis_server: RedisServer) -> AsyncIterator[tuple[str, str, str]]:
    """Apply the exported rules for user ``payment-<n>`` (prefix of its own); yield (prefix, user URL, admin URL)."""
    prefix = f"acl{uuid.uuid4().hex[:8]}"
    user = f"payment-{uuid.uuid4().hex[:6]}"
    policy = AccessPolicy.of(**{user: (["shop.payment.*"], ["shop.inventory.reserved"])})
    admin = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
    rules = redis_acl(topic_rights(policy, TOPICS), prefix=prefix, passwords={user: "s3cret"})
    for args in rules:
        await admin.execute_command("ACL", "SETUSER", *args)
    base = f"127.0.0.1:{redis_server.port}/0?prefix={prefix}"
    yield prefix, f"redis://{user}:s3cret@{base}", f"redis://{base}"
    await admin.execute_command("ACL", "DELUSER", user)
    await admin.aclose()


async def test_the_exported_rules_let_a_service_do_what_it_may(setup: tuple[str, str, str]) -> None:
    _, user_url, admin_url = setup
    admin, payment = RedisBroker.from_url(admin_url), RedisBroker.from_url(user_url)
    try:
        # Given a reservation published by someone allowed to
        await admin.publish("shop.inventory.reserved", [Record(b"reserved", key="o-1")])
        # When payment consumes it and publishes its capture
        subscription = await payment.subscribe("shop.inventory.reserved", "payment.capture")
        deliveries = await subscription.fetch(10, timeout=2.0)
        await payment.publish("shop.payment.captured", [Record(b"captured", key="o-1")])
        await subscription.settle(Settlement(acks=list(deliveries), inbox=["payment\x1fe-1"]))
        await subscription.close()
        # Then both went through
        assert [d.value for d in deliveries] == [b"reserved"]
        assert [d.value for d in await admin.read("shop.payment.captured", limit=10)] == [b"captured"]
        assert sum(lag.lag for lag in await admin.lag("payment.capture")) == 0  # the ack was stored
    finally:
        await payment.close()
        await admin.close()


async def test_the_server_refuses_a_publish_outside_the_services_rights(setup: tuple[str, str, str]) -> None:
    _, user_url, admin_url = setup
    admin, payment = RedisBroker.from_url(admin_url), RedisBroker.from_url(user_url)
    try:
        await admin.publish("shop.order.shipped", [Record(b"real", key="o-1")])  # the topic exists
        # When payment publishes a shipment (and appends to the reservations it only consumes)
        for topic in ("shop.order.shipped", "shop.inventory.reserved"):
            with pytest.raises(ChoreographError) as refused:
                await payment.publish(topic, [Record(b"forged", key="o-1")])
            # Then redis-server refuses it: no permission on the topic's keys
            message = str(refused.value).lower()
            assert "no permissions" in message or "can't access" in message, message
        assert [d.value for d in await admin.read("shop.order.shipped", limit=10)] == [b"real"]
        assert b"forged" not in [d.value for d in await admin.read("shop.inventory.reserved", limit=10)]
    finally:
        await payment.close()
        await admin.close()


def test_the_rules_render_as_redis_cli_lines() -> None:
    text = redis_acl_text(redis_acl(topic_rights(POLICY, TOPICS)))
    assert text.splitlines()[1].startswith("ACL SETUSER payment reset on +@all")
    assert "~chor:{shop.payment.captured}:p*" in text and "s3cret" not in text
