"""On NATS a settle stores a batch's inbox keys only after its outputs, on a real nats-server.

An inbox key says "handled, outputs committed": a redelivered record whose key
is stored is skipped as a duplicate. Were the key stored while the outputs
were not (a kill -9 or a server restart in the middle of a settle), the
redelivery would be skipped and its outputs lost for good — the chaos test saw
exactly one batch (50 outputs) go missing that way under load.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from nats.js import api

from choreograph.brokers.nats import NatsBroker
from choreograph.core.broker import Record, Settlement
from choreograph.core.errors import BrokerError
from tests.brokers.fetching import fetch_exactly

from .server import NatsServer


@pytest.fixture
async def broker(nats_server: NatsServer) -> AsyncIterator[NatsBroker]:
    """A broker with one partition, on its own prefix."""
    opened = NatsBroker.from_url(f"{nats_server.url}?prefix=s{uuid.uuid4().hex[:8]}&partitions=1&publish_timeout=2")
    yield opened
    await opened.close()


async def test_a_settle_whose_outputs_fail_stores_no_inbox_key(broker: NatsBroker) -> None:
    # Given a member holding a record, and an output topic whose stream takes no more bytes
    await broker.publish("out", [Record(b"earlier", "k")])
    js = broker.jetstream
    config = (await js.stream_info(broker.names.stream("out"))).config
    config.max_bytes, config.discard = 1, api.DiscardPolicy.NEW
    await js.update_stream(config)
    await broker.publish("t", [Record(b"a", "k")])
    member = await broker.subscribe("t", "g")
    held = await fetch_exactly(member, 1)

    # When its settle cannot store the output
    with pytest.raises(BrokerError):
        await member.settle(Settlement(acks=held, outputs=[("out", Record(b"output", "k"))], inbox=["src/e1"]))

    # Then the inbox does not remember the event: its redelivery is handled again and emits the output
    assert await member.seen(["src/e1"]) == set()
    await member.close()
