"""NATS: lag in seconds is an upper bound (lag positions count records, reads address stream sequences)."""

from __future__ import annotations

import uuid

from choreograph.brokers.nats import NatsBroker
from tests.brokers.lag_seconds import check_lag_seconds

from .server import NatsServer


async def test_lag_seconds_is_an_upper_bound(nats_server: NatsServer) -> None:
    broker = NatsBroker.from_url(f"{nats_server.url}?prefix=l{uuid.uuid4().hex[:8]}&ack_wait=3&lease_timeout=3")
    try:
        await check_lag_seconds(broker, exact=False)
    finally:
        await broker.close()
