"""Publish latency per topic (F5) and the broker's health figures (M8) in an App's /metrics."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from choreograph import App, Event
from choreograph.brokers.memory import MemoryBroker
from choreograph.brokers.sqlite import SqliteBroker
from choreograph.core.broker_health import HealthReporter, HealthSample
from choreograph.observe.broker_health import HEALTH_UP, PUBLISH_DURATION, PUBLISH_FAILURES, families
from choreograph.observe.metrics import install_metrics
from choreograph.runtime.publishing import PublishPolicy, PublishTimeout
from tests.unit.observe.test_metrics import samples, value


class Sent(Event, type="health.sent", version=1):
    n: int


class Other(Event, type="health.other", version=1):
    n: int


async def test_each_publish_is_timed_per_topic() -> None:
    app = App("health", broker=MemoryBroker())
    metrics = install_metrics(app)
    await app.publish(Sent(n=1))
    await app.publish_many([(Sent(n=2), None), (Other(n=3), None)])
    scrape = samples(await metrics.scrape())
    assert value(scrape, f"{PUBLISH_DURATION}_count", topic=Sent.topic()) == 2  # one call, one batch
    assert value(scrape, f"{PUBLISH_DURATION}_count", topic=Other.topic()) == 1
    assert value(scrape, f"{PUBLISH_DURATION}_sum", topic=Sent.topic()) > 0
    # the memory broker reports no health figures: no health series at all
    assert not any(name.startswith("choreograph_broker_") and name != "choreograph_broker_up" for name, _ in scrape)
    await app.close()


async def test_a_publish_past_its_deadline_is_counted_as_a_timeout(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    app = App("health", broker=f"sqlite:///{path}", publishing=PublishPolicy(deadline=0.3))
    metrics = install_metrics(app)
    await app.publish(Sent(n=0))
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(PublishTimeout):
            await app.publish(Sent(n=1))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    scrape = samples(await metrics.scrape())
    assert value(scrape, f"{PUBLISH_FAILURES}", topic=Sent.topic(), reason="timeout") == 1
    assert value(scrape, f"{PUBLISH_DURATION}_count", topic=Sent.topic()) == 1  # only the one that went through
    await app.close()


async def test_sqlite_reports_its_file_wal_and_checkpoint_progress(tmp_path: Path) -> None:
    # Given a SQLite log that was written to
    path = tmp_path / "health.db"
    broker = SqliteBroker(path)
    assert isinstance(broker, HealthReporter)
    app = App("health", broker=broker)
    metrics = install_metrics(app)
    try:
        await app.publish_many([(Sent(n=n), f"k{n}") for n in range(200)])
        # When /metrics is scraped
        scrape = samples(await metrics.scrape())
        # Then the file, the WAL and the checkpoint's progress are there, and consistent
        assert value(scrape, HEALTH_UP) == 1
        assert value(scrape, "choreograph_broker_sqlite_file_bytes") == path.stat().st_size > 0
        frames = value(scrape, "choreograph_broker_sqlite_wal_frames")
        copied = value(scrape, "choreograph_broker_sqlite_wal_checkpointed_frames")
        assert 0 <= copied <= frames
        assert value(scrape, "choreograph_broker_sqlite_pages_bytes") >= value(
            scrape, "choreograph_broker_sqlite_free_bytes"
        )
    finally:
        await app.close()


def test_samples_group_into_families_and_a_sample_with_other_label_names_is_dropped() -> None:
    given = [
        HealthSample("kafka_topic_partitions", 8, "p", (("topic", "a"),)),
        HealthSample("kafka_topic_partitions", 4, "p", (("topic", "b"),)),
        HealthSample("kafka_topic_partitions", 1, "p", (("other", "x"),)),
        HealthSample("kafka_brokers", 3, "b"),
    ]
    built = list(families(given))
    assert [family.name for family in built] == [
        "choreograph_broker_kafka_topic_partitions",
        "choreograph_broker_kafka_brokers",
    ]
    assert [(s.labels, s.value) for s in built[0].samples] == [({"topic": "a"}, 8.0), ({"topic": "b"}, 4.0)]
