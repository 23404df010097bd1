"""NATS: a broker can use a connection the application made, and leaves it open when it closes."""

from __future__ import annotations

import uuid

import nats

from choreograph.brokers.nats import NatsBroker, NatsConfig
from choreograph.core.broker import Record

from .server import NatsServer


async def test_a_connection_handed_in_is_used_and_left_open(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    config = NatsConfig(servers=(nats_server.url,), prefix=f"c{uuid.uuid4().hex[:8]}", partitions=1)
    broker = NatsBroker(config, client=nc)
    try:
        await broker.publish("orders", [Record(b"v", key="k")])
        assert broker.connection is nc
        assert [d.value for d in await broker.read("orders")] == [b"v"]
    finally:
        await broker.close()
    assert nc.is_connected  # still open: it is the application's
    await nc.close()
