"""A 3-node JetStream cluster (replicas=3) loses a node to kill -9 under load, then gets it back."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from choreograph import App
from choreograph.brokers.nats import NatsBroker
from choreograph.core import codec
from choreograph.core.broker import Record
from choreograph.core.envelope import Envelope
from choreograph.core.errors import BrokerError
from choreograph.core.event import Event
from choreograph.runtime.consumer import ConsumerConfig

from .server import NatsCluster

TOTAL = 3000
BATCH = 50
KEYS = 20


class Tick(Event, type="test.failover.tick", version=1):
    n: int


async def _publish_all(broker: NatsBroker, acked: set[str], published: asyncio.Event, kill_at: int) -> None:
    """Publish TOTAL envelopes in batches; a failed batch is retried as is (same ids: deduplicated)."""
    for start in range(0, TOTAL, BATCH):
        records, ids = [], []
        for n in range(start, start + BATCH):
            envelope = Envelope.for_event(Tick(n=n), source="failover", key=f"k{n % KEYS}")
            records.append(Record(codec.encode(envelope), envelope.partitionkey))
            ids.append(envelope.id)
        deadline = time.monotonic() + 60.0
        while True:
            try:
                await broker.publish(Tick.topic(), records)
                break
            except BrokerError:
                assert time.monotonic() < deadline, "publishing did not recover within 60s"
                await asyncio.sleep(0.2)
        acked.update(ids)
        if start + BATCH >= kill_at:
            published.set()
    published.set()


async def _stream_info(broker: NatsBroker) -> object:
    """Return the topic stream's info once it has a leader (elections take a moment)."""
    deadline = time.monotonic() + 30.0
    while True:
        try:
            info = await broker.jetstream.stream_info(broker.names.stream(Tick.topic()))
            if info.cluster is not None and info.cluster.leader:
                return info
        except Exception:  # during an election any JetStream request may fail
            pass
        assert time.monotonic() < deadline, "the stream has no leader after 30s"
        await asyncio.sleep(0.1)


async def _wait(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_kill_9_one_node_under_load_loses_nothing_acknowledged(nats_cluster: NatsCluster) -> None:
    # Given a 3-node cluster, streams and buckets with 3 replicas, a publisher and a consuming app
    url = f"{nats_cluster.url}?prefix=fo&replicas=3&ack_wait=5&lease_timeout=6"
    app = App("failover", broker=NatsBroker.from_url(url), consumer=ConsumerConfig(batch_size=200, fetch_timeout=0.2))
    handled: set[str] = set()

    @app.service("sink").on(Tick)
    async def record(event: Tick, ctx: object) -> None:
        handled.add(ctx.envelope.id)  # type: ignore[attr-defined]

    publisher = NatsBroker.from_url(url)
    acked: set[str] = set()
    reached = asyncio.Event()
    await app.start()
    try:
        publishing = asyncio.create_task(_publish_all(publisher, acked, reached, kill_at=TOTAL // 3))
        await asyncio.wait_for(reached.wait(), 60)
        await _wait(lambda: len(handled) > 0, 30, "the first handled events")

        # When the leader of the topic's stream is killed with SIGKILL mid-stream
        info: Any = await _stream_info(publisher)
        leader = next(node for node in nats_cluster.nodes if node.name == info.cluster.leader)
        await asyncio.to_thread(leader.kill)
        handled_at_kill = len(handled)

        # Then consumers continue while the node is down
        await _wait(lambda: len(handled) > handled_at_kill + 200, 60, "progress with a node down")

        # And the node rejoins after a restart
        leader.start()
        await asyncio.to_thread(leader.wait_healthy, 30.0)
        await asyncio.wait_for(publishing, 120)

        # And every acknowledged publish is handled
        await _wait(lambda: acked <= handled, 90, "every acknowledged event to be handled")
        assert len(acked) == TOTAL
        info = await _stream_info(publisher)
        assert info.state.messages >= TOTAL
        replicas = {peer.name: peer for peer in info.cluster.replicas or []}
        await _wait(lambda: leader.healthy(), 30, "the restarted node to report healthy")
        assert leader.name == info.cluster.leader or leader.name in replicas, "the killed node did not rejoin"
    finally:
        await app.close()
        await publisher.close()
