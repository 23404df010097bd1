"""A group reset while its App worker is blocked mid-batch, on a real nats-server (see tests/unit/replay)."""

from __future__ import annotations

import uuid

from choreograph.brokers.nats import NatsBroker
from tests.unit.replay.test_replay_handler import replay_through_handler
from tests.unit.replay.test_reset_running_worker import reset_while_blocked

from .server import NatsServer


async def test_reset_fences_the_running_worker(nats_server: NatsServer) -> None:
    broker = NatsBroker.from_url(f"{nats_server.url}?prefix=r{uuid.uuid4().hex[:8]}&lease_timeout=2&ack_wait=2")
    try:
        await reset_while_blocked(broker, timeout=20.0)
    finally:
        await broker.close()


async def test_a_range_replays_through_a_handler_as_a_new_group(nats_server: NatsServer) -> None:
    broker = NatsBroker.from_url(f"{nats_server.url}?prefix=r{uuid.uuid4().hex[:8]}&lease_timeout=2&ack_wait=2")
    try:
        await replay_through_handler(broker, timeout=20.0)
    finally:
        await broker.close()
