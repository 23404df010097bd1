"""The kafka:// URL form, and the scheme registered with open_broker."""

from __future__ import annotations

import pytest

from choreograph.brokers import open_broker
from choreograph.brokers.kafka import KafkaBroker, KafkaConfig
from choreograph.brokers.kafka.config import parse_url
from choreograph.core.errors import ConfigurationError


def test_url_lists_bootstrap_servers_and_options() -> None:
    servers, config = parse_url("kafka://a:9092,b:9093?partitions=3&idempotent=false&acks=1")
    assert servers == ["a:9092", "b:9093"]
    assert config == KafkaConfig(partitions=3, idempotent=False, acks="1")


@pytest.mark.parametrize("url", ["kafka://", "kafka://host", "kafka://h:1?nope=1", "kafka://h:1?acks=1"])
def test_bad_urls_are_rejected_with_a_clear_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_url(url)


def test_a_memory_only_cluster_is_declared_not_persistent() -> None:
    broker = KafkaBroker.from_url("kafka://h:1?persistent=false&idempotent=false")
    assert broker.capabilities.persistent is False
    assert KafkaBroker.from_url("kafka://h:1").capabilities.persistent is True


async def test_open_broker_knows_the_kafka_scheme() -> None:
    broker = open_broker("kafka://127.0.0.1:1")
    assert isinstance(broker, KafkaBroker)
    await broker.close()


def test_credentials_in_a_kafka_url_are_refused_not_passed_on_as_a_host() -> None:
    # The broker connects without SASL: "user:pass@host:9092" must not become a bootstrap server name.
    with pytest.raises(ConfigurationError, match="no credentials"):
        parse_url("kafka://user:p%2Fss@localhost:9092")


def test_the_state_topic_follows_the_naming_rule() -> None:
    with pytest.raises(ConfigurationError, match="topic name"):
        parse_url("kafka://localhost:9092?state_topic=a%7Db")
