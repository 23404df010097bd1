"""The shop demo runs unchanged on NATS JetStream."""

from __future__ import annotations

import uuid

import pytest

from tests.brokers.demo_run import assert_shop_outcome, run_demo

from .server import NatsServer


@pytest.mark.slow
def test_the_shop_demo_runs_on_nats(nats_server: NatsServer) -> None:
    rows = run_demo(f"{nats_server.url}?prefix=demo{uuid.uuid4().hex[:8]}")
    assert_shop_outcome(rows, 100, resends_reach_consumers=False)
