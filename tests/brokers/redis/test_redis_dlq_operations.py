"""Dead-letter operations (failure groups, paced group retry, edit-and-retry, archive, audit) on a real Redis."""

from __future__ import annotations

import uuid

from tests.unit.ops.dlq_scenario import dead_letter_operations

from .server import RedisServer


async def test_dead_letter_operations(redis_server: RedisServer) -> None:
    await dead_letter_operations(
        f"{redis_server.url}?prefix=dlqops{uuid.uuid4().hex[:8]}&partitions=2&poll_interval=0.05"
    )
