"""core.url_options: URL options read by the config's field types; bad ones name the option and the fix."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Annotated

import pytest

from choreograph.brokers.kafka.config import parse_url as kafka_url
from choreograph.brokers.nats.config import parse_url as nats_url
from choreograph.brokers.redis.config import RedisConfig
from choreograph.brokers.redis.config import parse_url as redis_url
from choreograph.core.errors import ConfigurationError
from choreograph.core.retention import parse_retention
from choreograph.core.url_options import Url, parse_options, url_options


@dataclass(frozen=True)
class _Toy:
    count: int = 1
    ratio: float | None = 0.5
    on: bool = False
    name: str | None = None
    mode: Annotated[str, Url(normalize=str.lower)] = "a"
    keep: Annotated[float | None, Url(parse=parse_retention)] = None
    secret: Annotated[str | None, Url(refuse="give secret_file")] = field(default=None, repr=False)
    old_keep: Annotated[float | None, Url(refuse="deprecated")] = None


_OPTIONS = url_options(_Toy, "toy", (("old_keep", "keep"),))


def test_each_field_is_read_by_its_type() -> None:
    query = "count=3&ratio=none&on=yes&name=&mode=B&keep=2d"
    assert parse_options(_OPTIONS, query) == {
        "count": 3, "ratio": None, "on": True, "name": "", "mode": "b", "keep": 2 * 86400.0,
    }  # fmt: skip
    assert _Toy(**parse_options(_OPTIONS, query)).count == 3


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("count=x", r"toy broker option count='x' is invalid: expected an integer"),
        ("ratio=x", r"ratio='x' is invalid: expected a number or none"),
        ("on=maybe", r"on='maybe' is invalid: expected true or false"),
        ("keep=7x", r"keep='7x' is invalid"),
        (
            "colour=red",
            r"unknown toy broker option 'colour' in URL; known options: count, keep, mode, name, on, ratio$",
        ),
        ("secret=s3cr3t", r"secret cannot be given in a URL: give secret_file"),
        ("count=1&count=2", r"count is given twice"),
        ("old_keep=1&keep=2", r"old_keep and keep are the same setting; give only keep"),
        ("keep=1&old_keep=2", r"old_keep and keep are the same setting; give only keep"),
    ],
)
def test_a_bad_option_is_a_configuration_error_naming_it(query: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_options(_OPTIONS, query)


def test_a_deprecated_spelling_still_works_and_says_the_new_name(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="choreograph.brokers"):
        assert parse_options(_OPTIONS, "old_keep=1h") == {"keep": 3600.0}
    assert "toy broker option old_keep is deprecated; write keep" in caplog.text


def test_redis_max_length_is_the_old_name_of_retention_max_records() -> None:
    # one name for the setting on every backend: SQLite's retention_max_records
    assert redis_url("redis://localhost/0?retention_max_records=50")[1].retention_max_records == 50
    assert redis_url("redis://localhost/0?max_length=50")[1].retention_max_records == 50
    assert RedisConfig(max_length=50).retention_max_records == 50
    with pytest.raises(ConfigurationError, match="max_length and retention_max_records are the same setting"):
        redis_url("redis://localhost/0?max_length=50&retention_max_records=60")
    with pytest.raises(ConfigurationError, match="max_length and retention_max_records are the same setting"):
        RedisConfig(max_length=50, retention_max_records=60)


@pytest.mark.parametrize(
    ("parse", "url", "fix"),
    [
        (redis_url, "redis://localhost/0?password=x", "password_file or password_env"),
        (nats_url, "nats://localhost:4222?token=x", "token_file or token_env"),
        (kafka_url, "kafka://localhost:9092?sasl_password=x", "sasl_password_file or sasl_password_env"),
        (nats_url, "nats://localhost:4222?servers=x", "the servers are the URL's hosts"),
    ],
)
def test_secrets_in_a_url_are_refused_with_where_they_go(parse: object, url: str, fix: str) -> None:
    with pytest.raises(ConfigurationError, match="cannot be given in a URL") as caught:
        parse(url)  # type: ignore[operator]
    assert fix in str(caught.value)
    assert "=x" not in str(caught.value)  # the refused value is not repeated
