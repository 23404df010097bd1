"""The redis:// URL form, and the scheme registered with open_broker."""

from __future__ import annotations

import pytest

from choreograph.brokers import open_broker
from choreograph.brokers.redis import RedisBroker, RedisConfig
from choreograph.brokers.redis.config import parse_url
from choreograph.core.errors import ConfigurationError


def test_url_options_become_the_config() -> None:
    client_url, config = parse_url("redis://localhost:6380/2?partitions=3&lease_timeout=4&prefix=app")
    assert client_url == "redis://localhost:6380/2"
    assert config == RedisConfig(partitions=3, lease_timeout=4.0, prefix="app")


@pytest.mark.parametrize(
    "url",
    ["redis://localhost:6379/0?bogus=1", "redis:///0", "redis://localhost/x", "redis://h:1/0?partitions=0"],
)
def test_bad_urls_are_rejected_with_a_clear_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_url(url)


def test_heartbeat_must_be_shorter_than_the_lease() -> None:
    with pytest.raises(ConfigurationError, match="heartbeat_interval"):
        RedisConfig(lease_timeout=1.0, heartbeat_interval=2.0)


async def test_open_broker_knows_the_redis_scheme() -> None:
    broker = open_broker("redis://127.0.0.1:1/0?partitions=2")
    assert isinstance(broker, RedisBroker)
    assert broker.config.partitions == 2
    await broker.close()
