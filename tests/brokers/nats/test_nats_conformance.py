"""The NATS JetStream broker passes the broker conformance suite against a real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

import pytest
from nats.js import api

from choreograph.brokers.nats import NatsBroker
from choreograph.brokers.nats import naming as n
from choreograph.core.broker import Broker, partition_for
from choreograph.core.clock import Clock
from choreograph.testing.conformance import BrokerConformance
from choreograph.testing.faults import ChildBroker

from .server import NatsServer

OPTIONS = "prefix=conf&ack_wait=3&lease_timeout=3"
"""Short deadlines so crashed or stalled members hand over within the suite's waits."""


class TestNatsConformance(BrokerConformance):
    capabilities = NatsBroker.capabilities
    lease_timeout = 3.0 + 3.0  # lease expiry, then the ack deadline of what the dead member held

    @pytest.fixture(autouse=True)
    def _server(self, nats_server: NatsServer) -> None:
        self.server = nats_server

    @property
    def url(self) -> str:
        return f"{self.server.url}?{OPTIONS}"

    async def make_broker(self, clock: Clock | None = None) -> Broker:
        return NatsBroker.from_url(self.url)

    async def reopen_broker(self, broker: Broker) -> Broker:
        await broker.close()
        self.server.restart()
        return NatsBroker.from_url(self.url)

    def child_broker(self, broker: Broker) -> ChildBroker:
        return ChildBroker(opener="choreograph.brokers.nats:NatsBroker.from_url", url=self.url)

    # -- fault hooks (section F) --

    can_restart_server = True

    async def restart_server(self) -> None:
        await asyncio.to_thread(self.server.restart)  # same ports and storage

    @contextlib.asynccontextmanager
    async def _refusing_dead_letters(self, broker: NatsBroker) -> AsyncIterator[None]:
        """The dead-letter bucket is full: its stream takes no more bytes (max_bytes, discard new)."""
        async with _full(broker, f"KV_{broker.names.dlq_bucket}"):
            yield

    def refusing_dead_letters(self, broker: Broker) -> AbstractAsyncContextManager[None]:
        assert isinstance(broker, NatsBroker)
        return self._refusing_dead_letters(broker)

    can_lose_store = True

    async def lose_store(self, broker: Broker) -> None:
        """Every stream and bucket of the broker's prefix is deleted, as a wiped store directory would leave it."""
        assert isinstance(broker, NatsBroker)
        js = broker.jetstream
        mine = (broker.names.stream_prefix, f"KV_{broker.config.prefix}_", f"OBJ_{broker.config.prefix}_")
        for name in [info.config.name for info in await js.streams_info()]:
            if name is not None and name.startswith(mine):
                await js.delete_stream(name)

    close_raises = False  # a failed leave is logged ("left group ... uncleanly"): the leases expire by themselves

    @contextlib.asynccontextmanager
    async def _failing_writes(self, broker: NatsBroker) -> AsyncIterator[None]:
        """The lease bucket is full: its stream takes no more bytes, so releasing a lease (a delete marker) fails."""
        async with _full(broker, f"KV_{broker.names.lease_bucket}"):
            yield

    def failing_writes(self, broker: Broker) -> AbstractAsyncContextManager[None]:
        assert isinstance(broker, NatsBroker)
        return self._failing_writes(broker)

    hostile_oversize = None  # the server refuses a record over 1 MB: the consumer's limit is never reached

    async def inject_raw(self, broker: Broker, topic: str, key: str, marker: str) -> list[str]:
        """Messages another client publishes to a partition subject with our transport headers forged."""
        assert isinstance(broker, NatsBroker)
        subject = broker.names.partition_subject(topic, partition_for(key, broker.config.partitions))
        forged = {
            f"{marker}-packed": {n.KEY_HEADER: key, n.HEADERS_HEADER: "{not json"},
            f"{marker}-types": {n.HEADERS_HEADER: '{"a": 1}'},
            f"{marker}-surrogate": {n.HEADERS_HEADER: '{"a": "\\ud800"}'},
            f"{marker}-offset": {n.KEY_HEADER: key, n.OFFSET_HEADER: "0"},
        }
        for value, headers in forged.items():
            await broker.jetstream.publish(subject, value.encode(), headers=headers)
        return [f"bytes:{value}" for value in forged]


@contextlib.asynccontextmanager
async def _full(broker: NatsBroker, stream: str) -> AsyncIterator[None]:
    """``stream`` takes no more bytes (max_bytes 1, discard new) inside the block."""
    js = broker.jetstream
    config = (await js.stream_info(stream)).config
    before = (config.max_bytes, config.discard)
    config.max_bytes, config.discard = 1, api.DiscardPolicy.NEW
    await js.update_stream(config)
    try:
        yield
    finally:
        config.max_bytes, config.discard = before
        await js.update_stream(config)
