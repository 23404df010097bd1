"""Dead-letter operations (failure groups, paced group retry, edit-and-retry, archive, audit) on a real NATS."""

from __future__ import annotations

import uuid

from tests.unit.ops.dlq_scenario import dead_letter_operations

from .server import NatsServer


async def test_dead_letter_operations(nats_server: NatsServer) -> None:
    await dead_letter_operations(f"{nats_server.url}?prefix=dlqops{uuid.uuid4().hex[:8]}&partitions=2")
