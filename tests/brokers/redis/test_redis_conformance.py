"""The Redis broker proves itself against the conformance suite, on a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

import pytest

from choreograph.brokers.redis import RedisBroker
from choreograph.core.broker import Broker, partition_for
from choreograph.core.clock import Clock
from choreograph.testing import BrokerConformance
from choreograph.testing.faults import ChildBroker

from .server import RedisServer

LEASE_TIMEOUT = 2.0


class TestRedisConformance(BrokerConformance):
    capabilities = RedisBroker.capabilities
    accepts_clock = True
    lease_timeout = LEASE_TIMEOUT

    @pytest.fixture(autouse=True)
    def _server(self, redis_server: RedisServer) -> None:
        self.server = redis_server

    def _url(self, prefix: str) -> str:
        return f"{self.server.url}?prefix={prefix}&partitions=4&lease_timeout={LEASE_TIMEOUT}&poll_interval=0.05"

    async def make_broker(self, clock: Clock | None = None) -> Broker:
        return RedisBroker.from_url(self._url(f"t{uuid.uuid4().hex[:8]}"), clock=clock)

    async def reopen_broker(self, broker: Broker) -> Broker:
        assert isinstance(broker, RedisBroker)
        await broker.close()
        self.server.restart()
        return RedisBroker.from_url(self._url(broker.config.prefix), clock=broker.clock)

    def child_broker(self, broker: Broker) -> ChildBroker:
        assert isinstance(broker, RedisBroker)
        return ChildBroker(url=self._url(broker.config.prefix), opener="choreograph.brokers.redis:RedisBroker.from_url")

    # -- fault hooks (section F) --

    can_restart_server = True

    async def restart_server(self) -> None:
        await asyncio.to_thread(self.server.restart)  # kill -9 and start again on the same data

    can_lose_store = True

    async def lose_store(self, broker: Broker) -> None:
        """The server loses every key at once, as a restart without persistence (or a FLUSHALL) would."""
        assert isinstance(broker, RedisBroker)
        await broker.client.flushall()

    @contextlib.asynccontextmanager
    async def _failing_writes(self, broker: RedisBroker) -> AsyncIterator[None]:
        """The server refuses every write of its user, as a replica would after a failover (ACL -@write)."""
        client = broker.client
        await client.execute_command("ACL", "SETUSER", "default", "-@write")
        try:
            yield
        finally:
            await client.execute_command("ACL", "SETUSER", "default", "+@all")

    def failing_writes(self, broker: Broker) -> AbstractAsyncContextManager[None]:
        assert isinstance(broker, RedisBroker)
        return self._failing_writes(broker)

    @contextlib.asynccontextmanager
    async def _refusing_dead_letters(self, broker: RedisBroker) -> AsyncIterator[None]:
        """The server's user may read the dead-letter keys but not write them (an ACL on key patterns)."""
        client, prefix = broker.client, broker.config.prefix
        allowed = [f"~{prefix}:{{conformance.*", f"~{prefix}:topics", f"%R~{prefix}:{{dead-letters}}:*"]
        await client.execute_command("ACL", "SETUSER", "default", "resetkeys", *allowed)
        try:
            yield
        finally:
            await client.execute_command("ACL", "SETUSER", "default", "resetkeys", "~*")

    def refusing_dead_letters(self, broker: Broker) -> AbstractAsyncContextManager[None]:
        assert isinstance(broker, RedisBroker)
        return self._refusing_dead_letters(broker)

    async def inject_raw(self, broker: Broker, topic: str, key: str, marker: str) -> list[str]:
        """Entries another client adds with its own ids (XADD *): a key and headers not UTF-8, a foreign layout."""
        assert isinstance(broker, RedisBroker)
        stream = broker.keys.stream(topic, partition_for(key, await broker.partitions(topic)))
        entries = [
            {b"v": f"{marker}-key".encode(), b"t": b"1.0", b"k": b"\xc3\x28"},
            {b"v": f"{marker}-headers".encode(), b"t": b"1.0", b"k": key.encode(), b"h": b'{"a": "\xff"'},
            {b"payload": f"{marker}-foreign".encode()},
        ]
        for fields in entries:
            await broker.client.xadd(stream, fields)
        return [f"bytes:{marker}-key", f"bytes:{marker}-headers", f"bytes:payload: {marker}-foreign"]
