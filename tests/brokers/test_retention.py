"""One retention setting on every backend: its default, its name and aliases, and SQLite trimming by it."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from choreograph.brokers.kafka.config import KafkaConfig
from choreograph.brokers.kafka.config import parse_url as kafka_url
from choreograph.brokers.kafka.retention import topic_configs
from choreograph.brokers.memory import MemoryBroker
from choreograph.brokers.nats.config import NatsConfig
from choreograph.brokers.nats.config import parse_url as nats_url
from choreograph.brokers.redis.config import RedisConfig
from choreograph.brokers.redis.config import parse_url as redis_url
from choreograph.brokers.sqlite import SqliteBroker, SqliteConfig
from choreograph.brokers.sqlite.config import parse_url as sqlite_url
from choreograph.core.broker import Delivery, Record, Settlement
from choreograph.core.clock import FakeClock
from choreograph.core.errors import ConfigurationError
from choreograph.core.retention import DEFAULT_RETENTION, RetentionReporter, parse_retention

DAY = 86400.0


def retention_of(url: str) -> float | None:
    """The retention a URL configures, whatever its backend."""
    if url.startswith("sqlite"):
        return sqlite_url(url)[1].retention
    if url.startswith("redis"):
        return redis_url(url)[1].retention
    if url.startswith("nats"):
        return nats_url(url).retention
    return kafka_url(url)[1].retention


BASES = ["sqlite:///./x.db", "redis://localhost:6379/0", "nats://localhost:4222", "kafka://localhost:9092"]
ALIASES = {
    "sqlite:///./x.db": "retention_max_age",
    "redis://localhost:6379/0": "max_age",
    "nats://localhost:4222": "max_age",
}


def test_every_backend_keeps_seven_days_by_default() -> None:
    assert DEFAULT_RETENTION == 7 * DAY
    for config in (SqliteConfig(), RedisConfig(), NatsConfig(), KafkaConfig()):
        assert config.retention == 7 * DAY
    for base in BASES:
        assert retention_of(base) == 7 * DAY


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize(
    ("text", "seconds"),
    [("3600", 3600.0), ("90s", 90.0), ("30m", 1800.0), ("36h", 36 * 3600.0), ("2d", 2 * DAY), ("1w", 7 * DAY),
     ("0", None), ("none", None), ("forever", None), ("NEVER", None)],
)  # fmt: skip
def test_retention_is_one_url_option_everywhere(base: str, text: str, seconds: float | None) -> None:
    assert retention_of(f"{base}?retention={text}") == seconds


@pytest.mark.parametrize("base", list(ALIASES))
def test_the_old_names_are_aliases_and_cannot_be_given_with_the_new_one(base: str) -> None:
    alias = ALIASES[base]
    assert retention_of(f"{base}?{alias}=60") == 60.0
    assert retention_of(f"{base}?{alias}=none") is None  # the old spelling of keep-forever keeps its meaning
    with pytest.raises(ConfigurationError, match=f"{alias} and retention are the same setting"):
        retention_of(f"{base}?{alias}=60&retention=120")


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("text", ["abc", "-1", "inf", "nan", "1e300", "7x", "d"])
def test_a_bad_retention_names_the_option(base: str, text: str) -> None:
    with pytest.raises(ConfigurationError, match="retention"):
        retention_of(f"{base}?retention={text}")


@given(st.text(max_size=12))
def test_parse_retention_returns_a_duration_or_raises_value_error(text: str) -> None:
    try:
        seconds = parse_retention(text)
    except ValueError:
        return
    assert seconds is None or 0 < seconds <= 10.0**9


def test_configs_in_code_take_seconds_zero_or_none_and_the_old_field_names() -> None:
    assert SqliteConfig(retention=0).retention is None
    assert RedisConfig(retention=None).retention is None
    assert SqliteConfig(retention_max_age=60).retention == 60.0
    assert RedisConfig(max_age=60).retention == NatsConfig(max_age=60).retention == 60.0
    with pytest.raises(ConfigurationError, match="retention"):
        KafkaConfig(retention=-5)
    with pytest.raises(ConfigurationError, match="retention"):
        SqliteConfig(retention=True)


def test_kafka_creates_topics_with_retention_ms() -> None:
    assert topic_configs(KafkaConfig()) == {"retention.ms": "604800000"}
    assert topic_configs(KafkaConfig(retention=None)) == {"retention.ms": "-1"}


async def test_each_backend_describes_its_retention_for_the_startup_line(tmp_path: Path) -> None:
    broker = SqliteBroker(tmp_path / "d.db")
    try:
        assert isinstance(broker, RetentionReporter)
        line = broker.describe_retention().describe()
        assert line.startswith("log retention: 7 days (sqlite default;")
        assert "never past a group's committed offset" in line
    finally:
        await broker.close()
    memory = MemoryBroker().describe_retention().describe()
    assert memory.startswith("log retention: forever (no retention) (memory default;")
    assert "?retention" not in memory  # the memory broker takes no such option


async def test_sqlite_trims_records_older_than_the_default_retention_once_every_group_has_them(tmp_path: Path) -> None:
    # Given a SQLite log with no retention option, a group that has read nothing, and records 8 days old
    clock = FakeClock()
    broker = SqliteBroker(tmp_path / "r.db", SqliteConfig(partitions=1), clock=clock)
    try:
        await broker.publish("t", [Record(b"old-1"), Record(b"old-2")])
        subscription = await broker.subscribe("t", "g")
        clock.advance(8 * DAY)
        await broker.publish("t", [Record(b"new")])
        # When retention runs, the group's unread records stay
        assert await broker.trim() == 0
        # and once the group has committed them, those past 7 days go, the young one stays
        deliveries: list[Delivery] = []
        for _ in range(50):  # bounded: the member takes its partition's lease first
            deliveries += await subscription.fetch(10, timeout=0.2)
            if len(deliveries) == 3:
                break
        await subscription.settle(Settlement(acks=list(deliveries)))
        assert await broker.trim() == 2
        assert [d.value for d in await broker.read("t")] == [b"new"]
    finally:
        await broker.close()


async def test_sqlite_records_younger_than_the_retention_stay(tmp_path: Path) -> None:
    clock = FakeClock()
    broker = SqliteBroker(tmp_path / "y.db", SqliteConfig(partitions=1, retention=None), clock=clock)
    try:
        await broker.publish("t", [Record(b"kept")])
        clock.advance(365 * DAY)
        assert await broker.trim() == 0
        assert [d.value for d in await broker.read("t")] == [b"kept"]
    finally:
        await broker.close()
