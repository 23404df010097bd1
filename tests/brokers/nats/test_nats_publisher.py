"""The batch publisher and inbox writes against a real nats-server: fast and atomic batches, and their fallback."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.js import api

from choreograph.brokers.nats import NatsBroker
from choreograph.brokers.nats.publisher import ATOMIC_LIMIT, FAST_LIMIT
from choreograph.core.broker import Record, Settlement
from choreograph.core.codec import encode
from choreograph.core.envelope import Envelope
from choreograph.core.errors import BrokerError

from .server import NatsServer


@pytest.fixture
async def broker(nats_server: NatsServer) -> AsyncIterator[NatsBroker]:
    """A broker with its own prefix on the shared test server, closed after the test."""
    broker = NatsBroker.from_url(f"{nats_server.url}?prefix=p{uuid.uuid4().hex[:8]}")
    yield broker
    await broker.close()


async def _reconfigure(broker: NatsBroker, stream: str, **settings: Any) -> api.StreamConfig:
    """Change ``settings`` of ``stream`` on the server (behind the broker's back); return its config now."""
    js = broker.jetstream
    config = (await js.stream_info(stream)).config
    for name, value in settings.items():
        setattr(config, name, value)
    return (await js.update_stream(config)).config


def _inbox(broker: NatsBroker) -> str:
    return f"KV_{broker.names.inbox_bucket}"


@pytest.mark.parametrize("kind", ["fast", "atomic"])
async def test_a_settle_stores_more_inbox_keys_than_one_batch_holds(broker: NatsBroker, kind: str) -> None:
    count = max(FAST_LIMIT, ATOMIC_LIMIT) + 250  # two batches
    await broker.publish("t", [Record(b"x", f"k{i}") for i in range(count)])
    sub = await broker.subscribe("t", "g")
    inbox = (await broker.jetstream.stream_info(_inbox(broker))).config
    assert inbox.allow_batched, "nats-server 2.14+ keeps allow_batched on the inbox"
    if kind == "atomic":  # as on a 2.12 or 2.13 server, which has atomic batches but no fast-ingest ones
        assert (await _reconfigure(broker, _inbox(broker), allow_atomic=True)).allow_atomic
        broker._inbox_batches = (broker._publisher.publish_atomic, ATOMIC_LIMIT)  # type: ignore[union-attr]
    got = []
    while len(got) < count:
        batch = await sub.fetch(count, 5)
        assert batch, "records stopped coming"
        got.extend(batch)
    keys = [f"key-{i}" for i in range(count)]
    await sub.settle(Settlement(acks=list(got), inbox=keys))
    assert await sub.seen([*keys, "never-written"]) == set(keys)
    await sub.close()


async def test_inbox_keys_go_one_by_one_when_the_server_refuses_batches(broker: NatsBroker) -> None:
    # Given a broker that believes batches work, on an inbox bucket that no longer allows them
    await broker.publish("t", [Record(b"x", "k")])
    sub = await broker.subscribe("t", "g")
    config = await _reconfigure(broker, _inbox(broker), allow_batched=False, allow_atomic=False)
    assert not config.allow_batched
    (delivery,) = await sub.fetch(10, 5)
    # When a settle writes inbox keys, the refused batch is sent again message by message
    await sub.settle(Settlement(acks=[delivery], inbox=["a", "b", "c"]))
    # Then every key is stored and nothing was lost
    assert await sub.seen(["a", "b", "c", "d"]) == {"a", "b", "c"}
    await sub.close()


async def test_a_publish_the_stream_rejects_raises_instead_of_counting_as_stored(broker: NatsBroker) -> None:
    # Given a topic whose stream refuses messages over 16 bytes
    await broker.publish("t", [Record(b"small", "k")])
    await _reconfigure(broker, broker.names.stream("t"), max_msg_size=16)
    # When a record over the limit is published, the rejection is an error, not a success
    with pytest.raises(BrokerError, match="maximum"):
        await broker.publish("t", [Record(b"x" * 100, "k")])
    # Then nothing but the first record is in the stream
    assert (await broker.jetstream.stream_info(broker.names.stream("t"))).state.messages == 1


async def test_records_go_as_fast_batches_in_order_and_a_repeat_is_dropped(broker: NatsBroker) -> None:
    records = [Record(encode(Envelope(id=f"id-{i}", source="s", type="t")), "k") for i in range(FAST_LIMIT + 10)]
    await broker.publish("t", records)
    info = await broker.jetstream.stream_info(broker.names.stream("t"))
    assert info.config.allow_batched, "nats-server 2.14+ keeps allow_batched on new topic streams"
    await broker.publish("t", records[:20])  # the same events again: dropped by their Nats-Msg-Id
    stored = await broker.read("t", limit=5000)
    assert [d.value for d in stored] == [r.value for r in records]


async def test_a_refused_fast_batch_goes_again_message_by_message(broker: NatsBroker) -> None:
    # Given a broker that believes the topic's stream takes fast batches, on a stream that no longer does
    await broker.publish("t", [Record(b"first", "k")])
    await _reconfigure(broker, broker.names.stream("t"), allow_batched=False)
    # When records are published, the refused batch is sent again one by one
    await broker.publish("t", [Record(b"r%d" % i, "k") for i in range(50)])
    # Then every record is stored once, in order
    stored = await broker.read("t", limit=100)
    assert [d.value for d in stored] == [b"first", *(b"r%d" % i for i in range(50))]


async def test_a_record_over_the_servers_max_payload_fails_at_once_and_the_connection_survives(
    broker: NatsBroker,
) -> None:
    await broker.publish("t", [Record(b"small", "k")])
    too_big = broker.connection.max_payload  # with its headers the frame is over the limit
    with pytest.raises(BrokerError, match="MaxPayload"):
        await broker.publish("t", [Record(b"x" * too_big, "k")])
    await broker.publish("t", [Record(b"after", "k")])
    assert [d.value for d in await broker.read("t")] == [b"small", b"after"]
