"""Metrics: a registry per App, counts by outcome, broker gauges at scrape time, /metrics over HTTP."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from choreograph import App, Context, Event, Reject, RetryPolicy
from choreograph.brokers.memory import MemoryBroker
from choreograph.core.broker import Record
from choreograph.observe.metrics import (
    END_TO_END,
    HANDLED,
    install_metrics,
    metrics_for,
    sample_names,
    serve_metrics,
)
from choreograph.observe.slo import SLO
from tests.conftest import wait_until


class Ping(Event, type="metrics.ping"):
    n: int


class Pong(Event, type="metrics.pong"):
    n: int


def build_app() -> App:
    app = App("pinger", broker=MemoryBroker())

    @app.service("ponger").on(Ping, retry=RetryPolicy(immediate=1, delayed=0))
    async def pong(event: Ping, ctx: Context) -> Pong:
        if event.n < 0:
            raise Reject("negative")
        if event.n == 0 and ctx.attempt == 1:
            raise RuntimeError("flaky zero")
        return Pong(n=event.n)

    return app


def samples(text: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(scrape: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return scrape.get((name, frozenset(labels.items())), 0.0)


async def run(app: App, events: list[Ping], handled: int) -> None:
    metrics = metrics_for(app)
    assert metrics is not None
    await app.start()
    try:
        for event in events:
            await app.publish(event)
        await wait_until(lambda: sum(s.handled + s.dead_letters for s in app.stats().values()) >= handled, 10)
    finally:
        await app.stop()


async def test_outcomes_are_counted_per_group_in_the_apps_own_registry() -> None:
    # Given an app with metrics
    app = build_app()
    metrics = install_metrics(app)
    # When 3 events succeed, one after a retry, and one is rejected
    await run(app, [Ping(n=1), Ping(n=2), Ping(n=0), Ping(n=-1)], handled=4)
    scrape = samples(await metrics.scrape())
    # Then each outcome has its count
    group = "ponger.pong"
    assert value(scrape, HANDLED, group=group, outcome="success") == 3
    assert value(scrape, HANDLED, group=group, outcome="retry") == 1
    assert value(scrape, HANDLED, group=group, outcome="dead_letter") == 1
    assert value(scrape, "choreograph_dead_letters_total", group=group, reason="reject") == 1
    assert value(scrape, "choreograph_dead_letters_open", group=group, reason="reject") == 1
    assert (
        value(
            scrape,
            "choreograph_events_published_total",
            service="pinger",
            topic="metrics.ping",
            event_type="metrics.ping",
        )
        == 4
    )
    assert (
        value(
            scrape,
            "choreograph_events_published_total",
            service="ponger",
            topic="metrics.pong",
            event_type="metrics.pong",
        )
        == 3
    )
    assert value(scrape, "choreograph_handler_duration_seconds_count", group=group) == 5
    assert value(scrape, f"{END_TO_END}_count", event_type="metrics.pong") == 3
    assert value(scrape, "choreograph_consumer_lag_records", group=group, topic="metrics.ping", partition="0") == 0
    assert value(scrape, "choreograph_broker_up") == 1
    # and nothing went to the global registry
    assert REGISTRY.get_sample_value(f"{HANDLED}", {"group": group, "outcome": "success"}) is None


async def test_undecodable_and_schema_errors_are_counted() -> None:
    app = build_app()
    metrics = install_metrics(app)
    await app.broker.publish(
        "metrics.ping",
        [
            Record(b"not json"),
            Record(b'{"specversion":"1.0","id":"x","source":"s","type":"metrics.ping","data":{"n":"NaN"}}'),
        ],
    )
    await app.start()
    try:
        await wait_until(lambda: app.stats()["ponger.pong"].dead_letters == 2, 10)
    finally:
        await app.stop()
    scrape = samples(metrics.render())
    assert value(scrape, "choreograph_dead_letters_total", group="ponger.pong", reason="decode") == 1
    assert value(scrape, "choreograph_schema_validation_errors_total", group="ponger.pong") == 1
    assert value(scrape, HANDLED, group="ponger.pong", outcome="dead_letter") == 2


async def test_duplicates_are_counted() -> None:
    app = build_app()
    metrics = install_metrics(app)
    envelope = await app.publish(Ping(n=5))
    await app.publish_envelope("metrics.ping", envelope)  # the same id again
    await app.start()
    try:
        await wait_until(lambda: app.stats()["ponger.pong"].duplicates == 1, 10)
    finally:
        await app.stop()
    scrape = samples(metrics.render())
    assert value(scrape, "choreograph_duplicates_detected_total", group="ponger.pong") == 1
    assert value(scrape, HANDLED, group="ponger.pong", outcome="duplicate") == 1


def test_install_is_idempotent_and_latency_slo_thresholds_become_buckets() -> None:
    app = build_app()
    app.declare(SLO.latency("quick", event_types=["metrics.pong"], threshold=0.75, target=0.99))
    metrics = install_metrics(app)
    assert install_metrics(app) is metrics
    assert 0.75 in metrics.latency_buckets


def test_replay_progress_is_a_gauge_others_can_set() -> None:
    metrics = install_metrics(build_app())
    metrics.replay_progress("orders-2026", processed=25, target=100)
    scrape = samples(metrics.render())
    assert value(scrape, "choreograph_replay_progress_ratio", replay="orders-2026") == 0.25
    metrics.replay_finished("orders-2026")
    assert value(samples(metrics.render()), "choreograph_replay_progress_ratio", replay="orders-2026") == 0


def test_sample_names_cover_counter_and_histogram_suffixes() -> None:
    names = sample_names(install_metrics(build_app()).family_names())
    assert {HANDLED, f"{END_TO_END}_bucket", "choreograph_consumer_lag_records"} <= names


async def http_get(port: int, path: str) -> tuple[str, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.decode().splitlines()[0], body


async def test_metrics_are_served_over_http() -> None:
    # Given a served app that handled one event
    app = build_app()
    server = await serve_metrics(app, 0, host="127.0.0.1")
    try:
        await run(app, [Ping(n=1)], handled=1)
        # When /metrics is scraped
        status, body = await http_get(server.port, "/metrics")
        # Then it answers with the exposition format and the count
        assert status == "HTTP/1.1 200 OK"
        assert value(samples(body), HANDLED, group="ponger.pong", outcome="success") == 1
        assert (await http_get(server.port, "/nope"))[0] == "HTTP/1.1 404 Not Found"
    finally:
        await server.close()
