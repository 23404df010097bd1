"""The batch publisher and inbox writes against a real nats-server: fast and atomic batches, and their fallback."""

from __future__ import annotations

import uuid

import pytest

from choreograph.brokers.nats import NatsBroker
from choreograph.brokers.nats.publisher import ATOMIC_LIMIT, FAST_LIMIT
from choreograph.core.broker import Record, Settlement
from choreograph.core.codec import encode
from choreograph.core.envelope import Envelope
from choreograph.core.errors import BrokerError

from .server import NatsServer


def _broker(server: NatsServer) -> NatsBroker:
    return NatsBroker.from_url(f"{server.url}?prefix=p{uuid.uuid4().hex[:8]}")


async def _inbox_allows(broker: NatsBroker, setting: str) -> bool:
    info = await broker.jetstream.stream_info(f"KV_{broker.names.inbox_bucket}")
    return bool(getattr(info.config, setting))


async def _allow(broker: NatsBroker, setting: str) -> bool:
    js = broker.jetstream
    config = (await js.stream_info(f"KV_{broker.names.inbox_bucket}")).config
    setattr(config, setting, True)
    return bool(getattr((await js.update_stream(config)).config, setting))


@pytest.mark.parametrize("kind", ["fast", "atomic"])
async def test_a_settle_stores_more_inbox_keys_than_one_batch_holds(nats_server: NatsServer, kind: str) -> None:
    broker = _broker(nats_server)
    try:
        count = max(FAST_LIMIT, ATOMIC_LIMIT) + 250  # two batches
        await broker.publish("t", [Record(b"x", f"k{i}") for i in range(count)])
        sub = await broker.subscribe("t", "g")
        assert await _inbox_allows(broker, "allow_batched"), "nats-server 2.14+ keeps allow_batched on the inbox"
        if kind == "atomic":  # as on a 2.12 or 2.13 server, which has atomic batches but no fast-ingest ones
            assert await _allow(broker, "allow_atomic"), "nats-server 2.12+ takes atomic batches"
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
    finally:
        await broker.close()


async def test_inbox_keys_go_one_by_one_when_the_server_refuses_batches(nats_server: NatsServer) -> None:
    # Given a broker that believes batches work, on an inbox bucket that no longer allows them
    broker = _broker(nats_server)
    try:
        await broker.publish("t", [Record(b"x", "k")])
        sub = await broker.subscribe("t", "g")
        js = broker.jetstream
        config = (await js.stream_info(f"KV_{broker.names.inbox_bucket}")).config
        config.allow_batched = False
        config.allow_atomic = False
        await js.update_stream(config)
        assert not await _inbox_allows(broker, "allow_batched")
        (delivery,) = await sub.fetch(10, 5)
        # When a settle writes inbox keys, the refused batch is sent again message by message
        await sub.settle(Settlement(acks=[delivery], inbox=["a", "b", "c"]))
        # Then every key is stored and nothing was lost
        assert await sub.seen(["a", "b", "c", "d"]) == {"a", "b", "c"}
        await sub.close()
    finally:
        await broker.close()


async def test_a_publish_the_stream_rejects_raises_instead_of_counting_as_stored(nats_server: NatsServer) -> None:
    # Given a topic whose stream refuses messages over 16 bytes
    broker = _broker(nats_server)
    try:
        await broker.publish("t", [Record(b"small", "k")])
        js = broker.jetstream
        config = (await js.stream_info(broker.names.stream("t"))).config
        config.max_msg_size = 16
        await js.update_stream(config)
        # When a record over the limit is published, the rejection is an error, not a success
        with pytest.raises(BrokerError, match="maximum"):
            await broker.publish("t", [Record(b"x" * 100, "k")])
        # Then nothing but the first record is in the stream
        assert (await js.stream_info(broker.names.stream("t"))).state.messages == 1
    finally:
        await broker.close()


async def test_records_go_as_fast_batches_in_order_and_a_repeat_is_dropped(nats_server: NatsServer) -> None:
    broker = _broker(nats_server)
    try:
        records = [Record(encode(Envelope(id=f"id-{i}", source="s", type="t")), "k") for i in range(FAST_LIMIT + 10)]
        await broker.publish("t", records)
        info = await broker.jetstream.stream_info(broker.names.stream("t"))
        assert info.config.allow_batched, "nats-server 2.14+ keeps allow_batched on new topic streams"
        await broker.publish("t", records[:20])  # the same events again: dropped by their Nats-Msg-Id
        stored = await broker.read("t", limit=5000)
        assert [d.value for d in stored] == [r.value for r in records]
    finally:
        await broker.close()


async def test_a_refused_fast_batch_goes_again_message_by_message(nats_server: NatsServer) -> None:
    # Given a broker that believes the topic's stream takes fast batches, on a stream that no longer does
    broker = _broker(nats_server)
    try:
        await broker.publish("t", [Record(b"first", "k")])
        js = broker.jetstream
        config = (await js.stream_info(broker.names.stream("t"))).config
        config.allow_batched = False
        await js.update_stream(config)
        # When records are published, the refused batch is sent again one by one
        await broker.publish("t", [Record(b"r%d" % i, "k") for i in range(50)])
        # Then every record is stored once, in order
        stored = await broker.read("t", limit=100)
        assert [d.value for d in stored] == [b"first", *(b"r%d" % i for i in range(50))]
    finally:
        await broker.close()


async def test_a_record_over_the_servers_max_payload_fails_at_once_and_the_connection_survives(
    nats_server: NatsServer,
) -> None:
    broker = _broker(nats_server)
    try:
        await broker.publish("t", [Record(b"small", "k")])
        too_big = broker.connection.max_payload  # with its headers the frame is over the limit
        with pytest.raises(BrokerError, match="MaxPayload"):
            await broker.publish("t", [Record(b"x" * too_big, "k")])
        await broker.publish("t", [Record(b"after", "k")])
        assert [d.value for d in await broker.read("t")] == [b"small", b"after"]
    finally:
        await broker.close()
