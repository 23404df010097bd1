"""Every broker is built the same way: XBroker(config=None, *, clock=None, client=None) (SQLite: the file first)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from choreograph.brokers.kafka import KafkaBroker, KafkaConfig
from choreograph.brokers.memory import MemoryBroker, MemoryConfig
from choreograph.brokers.nats import NatsBroker, NatsConfig
from choreograph.brokers.redis import RedisBroker, RedisConfig
from choreograph.brokers.sqlite import SqliteBroker
from choreograph.core.clock import FakeClock
from choreograph.core.errors import ConfigurationError


@pytest.mark.parametrize("broker_class", [MemoryBroker, RedisBroker, NatsBroker, KafkaBroker])
def test_config_first_then_clock_and_client_by_keyword(broker_class: type) -> None:
    parameters = inspect.signature(broker_class).parameters
    assert list(parameters)[:3] == ["config", "clock", "client"]
    assert parameters["config"].default is None
    assert parameters["clock"].kind is parameters["client"].kind is inspect.Parameter.KEYWORD_ONLY
    assert parameters["clock"].default is parameters["client"].default is None


def test_sqlite_takes_its_file_first_and_the_same_keywords() -> None:
    parameters = inspect.signature(SqliteBroker).parameters
    assert list(parameters) == ["path", "config", "clock", "client"]


def test_each_config_holds_the_location() -> None:
    clock = FakeClock()
    redis = RedisBroker(RedisConfig(url="redis://h:6380/2", partitions=2), clock=clock)
    assert (redis.config.url, redis.config.partitions, redis.clock) == ("redis://h:6380/2", 2, clock)
    kafka = KafkaBroker(KafkaConfig(servers=("a:9092", "b:9092")), clock=clock)
    assert (kafka.servers, kafka.clock) == (["a:9092", "b:9092"], clock)
    nats = NatsBroker(NatsConfig(servers=("nats://h:4222",)), clock=clock)
    assert (nats.config.servers, nats.clock) == (("nats://h:4222",), clock)
    memory = MemoryBroker(MemoryConfig(partitions=3), clock=clock)
    assert (memory.partitions, memory.clock) == (3, clock)


def test_from_url_fills_the_location_in() -> None:
    assert RedisBroker.from_url("redis://h:6380/2?partitions=2").config.url == "redis://h:6380/2"
    assert KafkaBroker.from_url("kafka://a:9092,b:9093").config.servers == ("a:9092", "b:9093")
    assert MemoryBroker.from_url("memory://?partitions=5").config == MemoryConfig(partitions=5)


def test_the_older_forms_still_work() -> None:
    assert RedisBroker("redis://h:1/0", config=RedisConfig(partitions=2)).config.url == "redis://h:1/0"
    assert RedisBroker("redis://h:1/0", config=RedisConfig(partitions=2)).config.partitions == 2
    kafka = KafkaBroker(["h:9092"], config=KafkaConfig(partitions=3))
    assert (kafka.servers, kafka.config.partitions) == (["h:9092"], 3)
    assert KafkaBroker(config=KafkaConfig(partitions=4)).config.partitions == 4
    assert MemoryBroker(partitions=2, dead_letter_retention=5).config == MemoryConfig(2, 5)


def test_a_redis_url_in_a_config_repr_hides_its_password() -> None:
    config = RedisBroker.from_url("redis://app:hunter2@h:6379/0").config
    assert "hunter2" not in repr(config)
    assert config.url == "redis://app:hunter2@h:6379/0"  # the client still gets it


async def test_brokers_without_a_client_say_so(tmp_path: Path) -> None:
    for make in (
        lambda: MemoryBroker(client=object()),  # type: ignore[arg-type]
        lambda: KafkaBroker(client=object()),  # type: ignore[arg-type]
        lambda: SqliteBroker(tmp_path / "x.db", client=object()),  # type: ignore[arg-type]
    ):
        with pytest.raises(ConfigurationError, match="takes no client"):
            make()


def test_a_config_given_twice_or_an_unknown_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="unexpected keyword"):
        KafkaBroker(colour="red")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="given twice"):
        RedisBroker(RedisConfig(), config=RedisConfig())
