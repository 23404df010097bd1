"""NATS: ``purge(delete=True)`` erases dead letters from the dead-letter bucket's stream."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from choreograph.brokers.nats import NatsBroker
from choreograph.core.errors import NotFound
from tests.brokers.dead_letter_deletion import check_dead_letter_deletion, dead_letter_records

from .server import NatsServer


async def test_deleted_dead_letters_cannot_be_read_or_listed(nats_server: NatsServer) -> None:
    broker = NatsBroker.from_url(f"{nats_server.url}?prefix=erase&ack_wait=3&lease_timeout=3")
    try:
        await check_dead_letter_deletion(broker)
    finally:
        await broker.close()


async def test_deleted_dead_letters_leave_the_bucket_stream(nats_server: NatsServer) -> None:
    broker = NatsBroker.from_url(f"{nats_server.url}?prefix=erase2&ack_wait=3&lease_timeout=3")
    try:
        letters = await dead_letter_records(broker, [b"a", b"b"])
        stream = f"KV_{broker.names.dlq_bucket}"
        before = (await broker.jetstream.stream_info(stream)).state.messages
        assert await broker.purge(None, delete=True) == 2
        # Then the stream holds no message of theirs (not even a delete marker with the old bytes)
        assert (await broker.jetstream.stream_info(stream)).state.messages == before - len(letters) == 0
    finally:
        await broker.close()


async def test_dead_letter_retention_is_the_bucket_ttl(nats_server: NatsServer) -> None:
    # Given a broker that creates its dead-letter bucket with a one-second TTL
    prefix = f"ttl{uuid.uuid4().hex[:6]}"
    broker = NatsBroker.from_url(
        f"{nats_server.url}?prefix={prefix}&ack_wait=3&lease_timeout=3&dead_letter_retention=1"
    )
    try:
        [letter] = await dead_letter_records(broker, [b"short-lived"])
        info = await broker.jetstream.stream_info(f"KV_{broker.names.dlq_bucket}")
        assert info.config.max_age == 1.0
        # When the server's expiry passes (it runs on the server's timer: wait for it, bounded)
        deadline = time.monotonic() + 15
        while await broker.dead_letters(status=None):
            assert time.monotonic() < deadline, "the dead letter outlived its retention"
            await asyncio.sleep(0.2)
        # Then it cannot be read either
        with pytest.raises(NotFound):
            await broker.dead_letter(letter.id)
    finally:
        await broker.close()
