"""A group reset while its App worker is blocked mid-batch, on a real redis-server (see tests/unit/replay)."""

from __future__ import annotations

import uuid

from choreograph.brokers.redis import RedisBroker
from tests.unit.replay.replay_audit import audited_group_start
from tests.unit.replay.test_replay_handler import replay_through_handler
from tests.unit.replay.test_reset_running_worker import reset_while_blocked

from .server import RedisServer


async def test_reset_fences_the_running_worker(redis_server: RedisServer) -> None:
    broker = RedisBroker.from_url(f"{redis_server.url}?prefix=r{uuid.uuid4().hex[:8]}&poll_interval=0.05")
    try:
        await reset_while_blocked(broker)
    finally:
        await broker.close()


async def test_a_range_replays_through_a_handler_as_a_new_group(redis_server: RedisServer) -> None:
    broker = RedisBroker.from_url(f"{redis_server.url}?prefix=r{uuid.uuid4().hex[:8]}&poll_interval=0.05")
    try:
        await replay_through_handler(broker)
    finally:
        await broker.close()


def test_a_group_started_at_earliest_is_audited_with_the_records_it_will_read(redis_server: RedisServer) -> None:
    assert audited_group_start(f"{redis_server.url}?prefix=r{uuid.uuid4().hex[:8]}&partitions=4") == [40]
