"""Dead-letter operations (failure groups, paced group retry, edit-and-retry, archive, audit) on Kafka."""

from __future__ import annotations

import uuid

from tests.unit.ops.dlq_scenario import dead_letter_operations

from .server import TansuServer


async def test_dead_letter_operations(kafka_server: TansuServer) -> None:
    state = f"__state_{uuid.uuid4().hex[:8]}"
    await dead_letter_operations(
        f"kafka://{kafka_server.bootstrap}?partitions=2&idempotent=false&persistent=false&state_topic={state}"
    )
