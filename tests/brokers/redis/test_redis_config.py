"""The redis:// URL form, and the scheme registered with open_broker."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
import redis.asyncio as aioredis

from choreograph.brokers import open_broker
from choreograph.brokers.redis import RedisBroker, RedisConfig
from choreograph.brokers.redis.config import parse_url
from choreograph.core.broker import Record
from choreograph.core.errors import ConfigurationError

from .server import RedisServer


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


# Every character a URL reserves, and a literal "%2F" that must stay "%2F" (decoded once, not twice).
PASSWORD = "p/a@s:s#w?o%2Fr d+"


def test_percent_encoded_credentials_stay_encoded_for_the_client_which_decodes_them_once() -> None:
    client_url, _ = parse_url(f"redis://alice:{quote(PASSWORD, safe='')}@localhost:6379/0?partitions=2")
    client = aioredis.Redis.from_url(client_url)
    assert client.connection_pool.connection_kwargs["username"] == "alice"
    assert client.connection_pool.connection_kwargs["password"] == PASSWORD


@pytest.mark.parametrize("url", ["redis://u:%FF@h:6379/0", "redis://h:6379/²", "redis://[::1:6379/0"])
def test_undecodable_credentials_and_odd_databases_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_url(url)


async def test_a_password_with_reserved_characters_authenticates_against_a_real_server(
    redis_server: RedisServer,
) -> None:
    # Given a user whose password holds every reserved character (an ACL user: the server stays open to others)
    user = f"u{uuid.uuid4().hex[:8]}"
    admin = aioredis.Redis.from_url(redis_server.url)
    await admin.execute_command("ACL", "SETUSER", user, "on", f">{PASSWORD}", "~*", "&*", "+@all")
    url = f"redis://{user}:{quote(PASSWORD, safe='')}@127.0.0.1:{redis_server.port}/0"
    broker = RedisBroker.from_url(url)
    try:
        # When the broker publishes and reads with it, Then the server accepted exactly that password
        await broker.publish("auth.check", [Record(b"x", key="k")])
        assert [d.value for d in await broker.read("auth.check")] == [b"x"]
        # and the same password encoded twice is refused (so the assertion above could fail)
        twice = RedisBroker.from_url(url.replace(quote(PASSWORD, safe=""), quote(quote(PASSWORD, safe=""), safe="")))
        # a refused password is a ConfigurationError naming the cause (it was BrokerUnavailable: "unreachable")
        with pytest.raises(ConfigurationError, match="redis refused the credentials"):
            await twice.ping()
        await twice.close()
    finally:
        await broker.close()
        await admin.execute_command("ACL", "DELUSER", user)
        await admin.aclose()
