"""A NATS server that loses its JetStream data under a running broker: StorageLost, not writes into nothing.

The module has its own server (the ``nats_server`` fixture is per module), so
wiping its store directory touches no other test.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid

import pytest

from choreograph import App, ConsumerConfig, Context, Event
from choreograph.brokers.nats import NatsBroker
from choreograph.core.broker import Record, Subscription
from choreograph.core.errors import BrokerError, StorageLost

from .server import NatsServer


def _url(server: NatsServer, prefix: str) -> str:
    return f"{server.url}?prefix={prefix}&lease_timeout=3&ack_wait=3"


def _records(n: int, prefix: str = "m") -> list[Record]:
    return [Record(f"{prefix}-{i}".encode(), key=f"k{i % 4}") for i in range(n)]


async def _until_reconnected(broker: NatsBroker) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while True:
        try:
            await broker.ping()
            return
        except BrokerError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.1)  # the server is coming back: look again shortly


async def test_a_first_start_creates_the_marker_and_a_second_broker_adopts_it(nats_server: NatsServer) -> None:
    prefix = f"s{uuid.uuid4().hex[:8]}"
    first, second = NatsBroker.from_url(_url(nats_server, prefix)), NatsBroker.from_url(_url(nats_server, prefix))
    try:
        await first.publish("orders", _records(2))
        await second.publish("orders", _records(2))
        assert first.storage.epoch is not None
        assert second.storage.epoch == first.storage.epoch
        entry = await (await first.jetstream.key_value(f"{prefix}_meta")).get("epoch")
        assert entry.value == first.storage.epoch.encode()
    finally:
        await first.close()
        await second.close()


async def test_a_restart_with_a_wiped_store_fails_publishes_with_storage_lost(nats_server: NatsServer) -> None:
    prefix = f"w{uuid.uuid4().hex[:8]}"
    broker = NatsBroker.from_url(_url(nats_server, prefix))
    try:
        await broker.publish("orders", _records(4))
        # When the server restarts with its store directory wiped
        await asyncio.to_thread(nats_server.stop)
        shutil.rmtree(nats_server.store, ignore_errors=True)
        await asyncio.to_thread(nats_server.start)
        await asyncio.to_thread(nats_server.wait_healthy)
        await _until_reconnected(broker)
        # Then the next publish fails naming the server and the marker, and so does every later one
        with pytest.raises(StorageLost, match=rf"NATS at nats://127\.0\.0\.1:{nats_server.port}.*marker.*is gone"):
            await broker.publish("orders", _records(1, "late"))
        with pytest.raises(StorageLost):
            await broker.publish("orders", _records(1, "later"))
        names = [info.config.name for info in await broker.jetstream.streams_info()]
        assert broker.names.stream("orders") not in names, "a publish recreated the topic on the wiped server"
    finally:
        await broker.close()
    # And a broker started after the loss works on the empty server (a first start: a new marker)
    fresh = NatsBroker.from_url(_url(nats_server, prefix))
    try:
        await fresh.publish("orders", _records(2))
        assert fresh.storage.epoch != broker.storage.epoch
    finally:
        await fresh.close()


async def test_a_member_whose_streams_vanish_gets_storage_lost(nats_server: NatsServer) -> None:
    prefix = f"v{uuid.uuid4().hex[:8]}"
    broker = NatsBroker.from_url(_url(nats_server, prefix))
    try:
        await broker.publish("orders", _records(4))
        sub = await broker.subscribe("orders", "billing")
        assert await sub.fetch(10, 5.0)
        js = broker.jetstream
        for info in await js.streams_info():
            name = info.config.name
            if name is not None and (name.startswith(broker.names.stream_prefix) or f"_{prefix}_" in f"_{name}"):
                await js.delete_stream(name)
        # Then the member's fetch raises StorageLost (found by its lease maintenance), rather than idling forever
        with pytest.raises(StorageLost):
            await _fetch_until_it_raises(sub, 100)
        await sub.close()
    finally:
        await broker.close()


async def _fetch_until_it_raises(sub: Subscription, rounds: int) -> None:
    for _ in range(rounds):
        await sub.fetch(10, 0.2)


class Job(Event, type="storage-loss.job"):
    n: int


async def test_a_worker_whose_store_is_wiped_stops_with_storage_lost(nats_server: NatsServer) -> None:
    # Given a running worker that handled an event and waits for more
    prefix = f"a{uuid.uuid4().hex[:8]}"
    app = App("loss", broker=_url(nats_server, prefix), consumer=ConsumerConfig(fetch_timeout=0.1))
    handled = asyncio.Event()

    @app.service("worker").on(Job)
    async def work(event: Job, ctx: Context) -> None:
        handled.set()

    await app.publish(Job(n=1))
    running = asyncio.create_task(app.run())
    await asyncio.wait_for(handled.wait(), 10)
    # When every stream and bucket of its prefix is deleted
    inspector = NatsBroker.from_url(_url(nats_server, f"x{prefix}"))
    try:
        await inspector.ping()
        js = inspector.jetstream
        for info in await js.streams_info():
            name = info.config.name
            if name is not None and (name.startswith(prefix.upper() + "_") or name.startswith(f"KV_{prefix}_")):
                await js.delete_stream(name)
    finally:
        await inspector.close()
    # Then run() ends with StorageLost (the process would exit non-zero), rather than idling on nothing
    with pytest.raises(StorageLost, match="lost"):
        await asyncio.wait_for(running, 20)
