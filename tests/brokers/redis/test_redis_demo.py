"""The shop demo runs unchanged on Redis Streams."""

from __future__ import annotations

import uuid

import pytest

from tests.brokers.demo_run import assert_shop_outcome, run_demo

from .server import RedisServer


@pytest.mark.slow
def test_the_shop_demo_runs_on_redis(redis_server: RedisServer) -> None:
    rows = run_demo(f"{redis_server.url}?prefix=demo{uuid.uuid4().hex[:8]}")
    assert_shop_outcome(rows, 100)
