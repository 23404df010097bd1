"""Kafka dead letters: counted from the state table; a retry that fails again names its predecessor."""

from __future__ import annotations

import uuid

from tests.unit.observe.dead_letter_chain import dead_letter_chain

from .server import TansuServer


async def test_counts_and_predecessor_links(kafka_server: TansuServer) -> None:
    state = f"__state_{uuid.uuid4().hex[:8]}"
    await dead_letter_chain(
        f"kafka://{kafka_server.bootstrap}?partitions=2&idempotent=false&persistent=false&state_topic={state}"
    )
