"""Redis broker health in /metrics, from INFO."""

from __future__ import annotations

from tests.brokers.health_scrape import one, scrape_health

from .server import RedisServer


async def test_a_scrape_reads_memory_clients_and_operations_from_info(redis_server: RedisServer) -> None:
    scrape = await scrape_health(redis_server.url)
    assert one(scrape, "choreograph_broker_health_up") == 1
    assert one(scrape, "choreograph_broker_redis_memory_used_bytes") > 0
    assert one(scrape, "choreograph_broker_redis_connected_clients") >= 1
    assert one(scrape, "choreograph_broker_redis_commands_processed") > 20
    assert one(scrape, "choreograph_broker_redis_evicted_keys") == 0
    assert one(scrape, "choreograph_broker_redis_aof_last_write_ok") == 1  # the fixture runs with appendonly yes
    assert one(scrape, "choreograph_publish_duration_seconds_count", topic="health.probe") == 1
