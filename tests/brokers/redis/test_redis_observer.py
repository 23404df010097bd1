"""On Redis, an observer started after the traffic judges deadlines only against what it has read."""

from __future__ import annotations

import uuid

from choreograph import App
from choreograph.observe.flows import MemoryFlowStore
from tests.unit.observe.late_start import observer_started_after_traffic

from .server import RedisServer


async def test_an_observer_started_after_the_traffic_reports_only_the_stuck_instance(redis_server: RedisServer) -> None:
    app = App("late", broker=f"{redis_server.url}?prefix=o{uuid.uuid4().hex[:8]}&partitions=2")
    try:
        await observer_started_after_traffic(app, MemoryFlowStore())
    finally:
        await app.close()
