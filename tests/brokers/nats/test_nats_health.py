"""NATS broker health in /metrics: JetStream account figures always, server figures from the monitoring port."""

from __future__ import annotations

import socket

from tests.brokers.health_scrape import one, scrape_health

from .server import NatsServer


async def test_a_scrape_reads_jetstream_and_the_monitoring_endpoint(nats_server: NatsServer) -> None:
    url = f"{nats_server.url}?monitor_url=http://127.0.0.1:{nats_server.monitor_port}"
    scrape = await scrape_health(url)
    assert one(scrape, "choreograph_broker_health_up") == 1
    assert one(scrape, "choreograph_broker_nats_jetstream_streams") >= 1
    assert (
        one(scrape, "choreograph_broker_nats_jetstream_storage_bytes")
        + one(scrape, "choreograph_broker_nats_jetstream_memory_bytes")
        > 0
    )
    assert one(scrape, "choreograph_broker_nats_monitor_up") == 1
    server = nats_server.name
    assert one(scrape, "choreograph_broker_nats_server_connections", server=server) >= 1
    assert one(scrape, "choreograph_broker_nats_server_memory_bytes", server=server) > 0
    assert one(scrape, "choreograph_broker_nats_server_jetstream_messages", server=server) >= 20
    assert one(scrape, "choreograph_broker_nats_server_slow_consumers", server=server) >= 0


async def test_an_unreachable_monitoring_port_is_reported_without_hiding_the_account(nats_server: NatsServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    scrape = await scrape_health(f"{nats_server.url}?monitor_url=http://127.0.0.1:{closed}")
    assert one(scrape, "choreograph_broker_health_up") == 1
    assert one(scrape, "choreograph_broker_nats_monitor_up") == 0
    assert one(scrape, "choreograph_broker_nats_jetstream_streams") >= 1
    assert not any(name.startswith("choreograph_broker_nats_server_") for name, _ in scrape)
