"""The log's size at scrape time: records per topic, and bytes where the backend can tell."""

from __future__ import annotations

import os
from pathlib import Path

from choreograph import App
from choreograph.brokers.memory import MemoryBroker
from choreograph.brokers.sqlite import SqliteBroker, SqliteConfig
from choreograph.core.broker import Record
from choreograph.core.retention import LogSizeReporter
from choreograph.observe.metrics import LOG_BYTES, LOG_RECORDS, LOG_STORE_BYTES, install_metrics
from tests.unit.observe.test_metrics import samples, value


async def test_sqlite_scrape_reports_records_per_topic_and_the_file_size(tmp_path: Path) -> None:
    # Given a SQLite log with two topics, one of them trimmed by a record limit
    path = tmp_path / "size.db"
    broker = SqliteBroker(path, SqliteConfig(partitions=4, retention_max_records=10))
    app = App("sizes", broker=broker)
    metrics = install_metrics(app)
    try:
        await broker.publish("a", [Record(b"x" * 1000, key=f"k{i}") for i in range(300)])
        await broker.publish("b", [Record(b"y", key="k") for _ in range(5)])
        await broker.trim()
        # When /metrics is scraped
        scrape = samples(await metrics.scrape())
        # Then each topic's retained records are counted (a: at most 10 per partition kept)
        infos = {info.name: info.records for info in await broker.topics()}
        assert value(scrape, LOG_RECORDS, topic="a") == infos["a"] <= 40
        assert value(scrape, LOG_RECORDS, topic="b") == 5
        # and the store's bytes are the file's pages plus its WAL: at least what is on disk for the file
        stored = value(scrape, LOG_STORE_BYTES, backend="sqlite")
        assert stored >= os.path.getsize(path) > 0
        # SQLite cannot tell bytes per topic cheaply: no per-topic bytes series
        assert value(scrape, LOG_BYTES, topic="a") == 0
    finally:
        await app.close()


async def test_memory_scrape_counts_records_per_topic() -> None:
    broker = MemoryBroker(partitions=2)
    assert isinstance(broker, LogSizeReporter)
    app = App("sizes", broker=broker)
    metrics = install_metrics(app)
    await broker.publish("m", [Record(b"1"), Record(b"2"), Record(b"3")])
    scrape = samples(await metrics.scrape())
    assert value(scrape, LOG_RECORDS, topic="m") == 3
    assert not any(name == LOG_STORE_BYTES for name, _ in scrape)
    await app.close()
