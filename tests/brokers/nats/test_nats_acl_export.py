"""The NATS permissions `choreograph export acl --format nats` writes, loaded by a real nats-server.

Given the users block for a policy where ``payment`` publishes captures and
consumes reservations (and an unrestricted ``admin``): payment publishes and
consumes what it may, and the server refuses its publish to a topic outside
its rights (a permissions violation: nothing is stored).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from choreograph.brokers.nats import NatsBroker
from choreograph.brokers.nats.config import parse_url
from choreograph.core.broker import Record, Settlement
from choreograph.core.errors import ChoreographError
from choreograph.security import AccessPolicy
from choreograph.security.acl import nats_authorization, nats_users, topic_rights

from .server import NatsServer, nats_server_binary

TOPICS = {t: t for t in ("shop.inventory.reserved", "shop.payment.captured", "shop.order.shipped")}
POLICY = AccessPolicy.of(payment=(["shop.payment.*"], ["shop.inventory.reserved"]))


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    users = nats_users(topic_rights(POLICY, TOPICS), all_topics=TOPICS.values(), passwords={"payment": "s3cret"})
    users.append('    { user: "admin", password: "admin-pw" }')
    block = "authorization {\n  users: [\n" + "\n".join(users) + "\n  ]\n}\n"
    server = NatsServer(nats_server_binary(), tmp_path_factory.mktemp("nats-acl"), "acl", extra_config=[block])
    server.start()
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


def broker(server: NatsServer, user: str, password: str) -> NatsBroker:
    return NatsBroker(parse_url(f"nats://{user}:{password}@127.0.0.1:{server.port}?publish_timeout=2"))


async def test_the_exported_permissions_let_a_service_do_what_it_may(acl_server: NatsServer) -> None:
    admin, payment = broker(acl_server, "admin", "admin-pw"), broker(acl_server, "payment", "s3cret")
    try:
        await admin.publish("shop.inventory.reserved", [Record(b"reserved", key="o-1")])
        await admin.publish("shop.payment.captured", [Record(b"first", key="o-0")])  # streams exist
        subscription = await payment.subscribe("shop.inventory.reserved", "payment.capture")
        deliveries = await subscription.fetch(10, timeout=5.0)
        await payment.publish("shop.payment.captured", [Record(b"captured", key="o-1")])
        await subscription.settle(Settlement(acks=list(deliveries)))
        await subscription.close()
        assert [d.value for d in deliveries] == [b"reserved"]
        assert b"captured" in [d.value for d in await admin.read("shop.payment.captured", limit=10)]
    finally:
        await payment.close()
        await admin.close()


async def test_the_server_refuses_a_publish_outside_the_services_rights(acl_server: NatsServer) -> None:
    admin, payment = broker(acl_server, "admin", "admin-pw"), broker(acl_server, "payment", "s3cret")
    try:
        await admin.publish("shop.order.shipped", [Record(b"real", key="o-1")])
        await payment.ping()
        # When payment publishes a shipment
        with pytest.raises(ChoreographError) as refused:
            await payment.publish("shop.order.shipped", [Record(b"forged", key="o-1")])
        # Then the server refused it (nats-py reports that only to its error callback: the client sees no
        # acknowledgement), and nothing of it is stored
        assert "PubAck" in str(refused.value)
        assert (
            '"$G/user:payment" - Publish Violation - Subject "choreo.shop_order_shipped.' in acl_server.log.read_text()
        )
        assert [d.value for d in await admin.read("shop.order.shipped", limit=10)] == [b"real"]
    finally:
        await payment.close()
        await admin.close()


def test_the_block_reads_passwords_from_the_environment_unless_given() -> None:
    text = nats_authorization(topic_rights(POLICY, TOPICS), all_topics=TOPICS.values())
    assert "password: $PAYMENT_PASSWORD" in text
    assert '"choreo.shop_payment_captured.>"' in text and "choreo.shop_order_shipped.>" not in text


async def test_a_service_cannot_delete_purge_or_read_a_stream_outside_its_rights(acl_server: NatsServer) -> None:
    import nats
    from nats.js.errors import NotFoundError

    admin = broker(acl_server, "admin", "admin-pw")
    raw = await nats.connect(f"nats://payment:s3cret@127.0.0.1:{acl_server.port}")
    try:
        await admin.publish("shop.order.shipped", [Record(b"kept", key="o-2")])
        js = raw.jetstream(timeout=1.0)
        stream = "CHOREO_shop_order_shipped"
        # When payment tries to delete or purge another service's stream, or to read it through a consumer
        # (the server drops a denied API request: the client only times out)
        for attempt in (
            js.delete_stream(stream),
            js.purge_stream(stream),
            js.delete_stream("CHOREO_shop_payment_captured"),  # its own stream: deleting is denied too
            js.add_consumer(stream, durable_name="peek"),
            js.get_msg(stream, 1),
        ):
            with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
                await attempt
        # nor a key-value bucket of the operators' (the audit trail), nor the JetStream API at large
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
            await js.create_key_value(bucket="choreo_kv_audit")
        # Then the server logged each as a violation, and the stream and its records are intact
        log = acl_server.log.read_text()
        denied = [
            f"$JS.API.STREAM.DELETE.{stream}",
            f"$JS.API.STREAM.PURGE.{stream}",
            "$JS.API.STREAM.DELETE.CHOREO_shop_payment_captured",
            f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.peek",
            f"$JS.API.STREAM.MSG.GET.{stream}",
            "$JS.API.STREAM.CREATE.KV_choreo_kv_audit",
        ]
        for subject in denied:
            assert f'"$G/user:payment" - Publish Violation - Subject "{subject}"' in log, subject
        assert b"kept" in [d.value for d in await admin.read("shop.order.shipped", limit=10)]
        operator = await nats.connect(f"nats://admin:admin-pw@127.0.0.1:{acl_server.port}")
        try:
            with pytest.raises(NotFoundError):
                await operator.jetstream().consumer_info(stream, "peek")
        finally:
            await operator.close()
    finally:
        await raw.close()
        await admin.close()


async def test_a_service_app_runs_whole_under_its_exported_permissions(acl_server: NatsServer) -> None:
    from choreograph import App, Context, Event, Reject
    from choreograph.runtime.retry import RetryPolicy
    from tests.conftest import wait_until

    class Reserved(Event, type="shop.inventory.reserved"):
        order_id: str

    class Captured(Event, type="shop.payment.captured"):
        order_id: str

    # Given the payment service as an App connected with its exported user: dedupe, a handler output, a dead letter
    url = f"nats://payment:s3cret@127.0.0.1:{acl_server.port}?publish_timeout=2"
    app = App("shop", broker=url)
    handled: list[str] = []

    @app.service("payment").on(Reserved, retry=RetryPolicy(immediate=0, delayed=0))
    async def capture(event: Reserved, ctx: Context) -> Captured:
        if event.order_id == "bad":
            raise Reject("refused")
        handled.append(event.order_id)
        return Captured(order_id=event.order_id)

    admin = App("shop", broker=f"nats://admin:admin-pw@127.0.0.1:{acl_server.port}")
    before = acl_server.log.read_text().count('"$G/user:payment" - Publish Violation')
    # When inventory's events arrive (one twice) and payment runs
    await app.start()
    try:
        first = await admin.publish(Reserved(order_id="good"), key="good")
        await admin.publish_envelope(Reserved.topic(), first)  # a duplicate: dropped by the inbox
        await admin.publish(Reserved(order_id="bad"), key="bad")
        await wait_until(lambda: app.stats()["payment.capture"].dead_letters == 1 and handled == ["good"], 30, "both")
    finally:
        await app.close()
        await admin.close()
    # Then it handled, published and dead-lettered without a single refused request
    assert handled == ["good"]
    assert acl_server.log.read_text().count('"$G/user:payment" - Publish Violation') == before
