"""On Kafka, an observer started after the traffic judges deadlines only against what it has read."""

from __future__ import annotations

import uuid

from choreograph import App
from choreograph.observe.flows import MemoryFlowStore
from tests.unit.observe.late_start import observer_started_after_traffic

from .server import TansuServer


async def test_an_observer_started_after_the_traffic_reports_only_the_stuck_instance(kafka_server: TansuServer) -> None:
    state = f"__state_{uuid.uuid4().hex[:8]}"
    url = f"kafka://{kafka_server.bootstrap}?partitions=2&idempotent=false&persistent=false&state_topic={state}"
    app = App("late", broker=url)
    try:
        await observer_started_after_traffic(app, MemoryFlowStore(), finished=30)
    finally:
        await app.close()
