"""NATS dead letters: counted a page at a time; a retry that fails again names its predecessor."""

from __future__ import annotations

import uuid

from tests.unit.observe.dead_letter_chain import dead_letter_chain

from .server import NatsServer


async def test_counts_and_predecessor_links(nats_server: NatsServer) -> None:
    await dead_letter_chain(f"{nats_server.url}?prefix=dl{uuid.uuid4().hex[:8]}&partitions=2")
