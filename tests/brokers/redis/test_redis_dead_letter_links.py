"""Redis dead letters: counted by their metadata alone; a retry that fails again names its predecessor."""

from __future__ import annotations

import uuid

from tests.unit.observe.dead_letter_chain import dead_letter_chain

from .server import RedisServer


async def test_counts_and_predecessor_links(redis_server: RedisServer) -> None:
    await dead_letter_chain(f"{redis_server.url}?prefix=dl{uuid.uuid4().hex[:8]}&partitions=2&poll_interval=0.05")
