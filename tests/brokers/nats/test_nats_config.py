"""The nats:// URL form: credentials with reserved characters are decoded exactly once and reach the server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from choreograph.brokers.nats import NatsBroker
from choreograph.brokers.nats.config import NatsConfig, parse_url
from choreograph.core.broker import Record
from choreograph.core.errors import ConfigurationError

from .server import NatsServer, nats_server_binary

# Every character a URL reserves, and a literal "%2F" that must stay "%2F" (decoded once, not twice).
PASSWORD = "p/a@s:s#w?o%2Fr d+"
USER = "al:ice@x"


def test_percent_encoded_credentials_are_decoded_once_and_kept_out_of_the_server_urls() -> None:
    config = parse_url(f"nats://{quote(USER, safe='')}:{quote(PASSWORD, safe='')}@h1:4222,h2:4223?prefix=app")
    assert (config.user, config.password, config.token) == (USER, PASSWORD, None)
    assert config.servers == ("nats://h1:4222", "nats://h2:4223")
    assert PASSWORD not in repr(config)


def test_a_lone_user_part_is_a_token() -> None:
    config = parse_url("nats://s3cr%2Ft@localhost:4222")
    assert (config.user, config.password, config.token) == (None, None, "s3cr/t")


@pytest.mark.parametrize(
    "url",
    [
        "nats://u:%FF@h:4222",  # not UTF-8 once decoded
        "nats://:pw@h:4222",  # empty user
        "nats://h:4222,,h2:4223",
        "nats://h:4222/path",
        "nats://[::1:4222",
        "nats://h:4222?prefix=a%0A",
    ],
)
def test_malformed_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_url(url)


def test_user_and_password_go_together() -> None:
    with pytest.raises(ConfigurationError, match="together"):
        NatsConfig(user="u")
    with pytest.raises(ConfigurationError, match="token"):
        NatsConfig(token="t", user="u", password="p")


@pytest.fixture(scope="module")
def secured_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A JetStream node that accepts only ``USER`` with ``PASSWORD``."""
    server = NatsServer(
        nats_server_binary(), Path(tmp_path_factory.mktemp("nats-auth")), "auth", users={USER: PASSWORD}
    )
    server.start()
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


async def test_a_password_with_reserved_characters_authenticates_against_a_real_server(
    secured_server: NatsServer,
) -> None:
    # Given the password percent-encoded in the URL, as URLs require
    url = f"nats://{quote(USER, safe='')}:{quote(PASSWORD, safe='')}@127.0.0.1:{secured_server.port}"
    broker = NatsBroker.from_url(url)
    try:
        # When the broker connects and publishes, Then the server accepted exactly that password
        await broker.publish("auth.check", [Record(b"x", key="k")])
        assert [d.value for d in await broker.read("auth.check")] == [b"x"]
    finally:
        await broker.close()


async def test_the_password_encoded_twice_is_refused_by_the_server(secured_server: NatsServer) -> None:
    # The control: a password decoded one time too few does not authenticate, so the test above could fail.
    twice = quote(quote(PASSWORD, safe=""), safe="")
    broker = NatsBroker.from_url(f"nats://{quote(USER, safe='')}:{twice}@127.0.0.1:{secured_server.port}")
    try:
        # a refused password is a ConfigurationError naming the cause (it was BrokerUnavailable: "no servers")
        with pytest.raises(ConfigurationError, match="refused the credentials"):
            await broker.ping()
    finally:
        await broker.close()
