"""The shop demo runs unchanged on Kafka (Tansu)."""

from __future__ import annotations

import uuid

import pytest

from tests.brokers.demo_run import assert_shop_outcome, run_demo

from .server import TansuServer


@pytest.mark.slow
def test_the_shop_demo_runs_on_kafka(kafka_server: TansuServer) -> None:
    # Tansu has no idempotent producer and keeps nothing on disk (see docs/backends/kafka.md); a state topic
    # of its own keeps this run apart from the conformance suite's
    state = f"demo-state-{uuid.uuid4().hex[:8]}"
    # Tansu holds each JoinGroup for half the session timeout: 2 s sessions keep joins near 1 s (backends/kafka.md)
    url = (
        f"kafka://{kafka_server.bootstrap}?idempotent=false&persistent=false&state_topic={state}"
        "&session_timeout=2&heartbeat_interval=0.5"
    )
    rows = run_demo(url)
    assert_shop_outcome(rows, 100)
