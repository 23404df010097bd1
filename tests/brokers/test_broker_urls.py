"""Every backend's URL parsing: a malformed option or URL is a ConfigurationError, never another exception."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from choreograph.brokers.kafka import config as kafka
from choreograph.brokers.memory import MemoryBroker
from choreograph.brokers.nats import config as nats
from choreograph.brokers.redis import config as redis
from choreograph.brokers.sqlite import config as sqlite
from choreograph.core.errors import ConfigurationError

# base URL, parse function, known option names
BACKENDS: dict[str, tuple[str, Callable[[str], Any], list[str]]] = {
    "sqlite": ("sqlite:///./x.db", sqlite.parse_url, sorted(sqlite._PARSERS)),
    "nats": ("nats://127.0.0.1:4222", nats.parse_url, sorted(nats._PARSERS)),
    "redis": ("redis://localhost:6379/0", redis.parse_url, sorted(redis._PARSERS)),
    "kafka": ("kafka://localhost:9092", kafka.parse_url, sorted(kafka._PARSERS)),
    "memory": ("memory://", MemoryBroker.from_url, ["partitions", "dead_letter_retention"]),
}
OPTIONS = [(backend, name) for backend, (_, _, names) in BACKENDS.items() for name in names]

NASTY = ["nan", "NaN", "inf", "-inf", "infinity", "-1", "0", "-0.0", "1e400", "9" * 5000, "1e-400", "x", "", "none",
         "true", "1.5", " 2 ", "²", "١٢", "0x10", "1_000", "%FF", "\x00", "\n", "{}", "9" * 400]  # fmt: skip


def _parse(backend: str, query: str) -> None:
    base, parse, _ = BACKENDS[backend]
    with contextlib.suppress(ConfigurationError):  # the only refusal allowed
        parse(f"{base}?{query}")


@pytest.mark.parametrize(("backend", "name"), OPTIONS)
@pytest.mark.parametrize("text", NASTY)
def test_a_nasty_value_of_any_known_option_parses_or_is_a_configuration_error(
    backend: str, name: str, text: str
) -> None:
    _parse(backend, f"{name}={quote(text)}")


@settings(max_examples=300)
@given(option=st.sampled_from(OPTIONS), text=st.text(max_size=40) | st.from_regex(r"-?[0-9._e+]{0,30}", fullmatch=True))
def test_any_value_of_any_known_option_parses_or_is_a_configuration_error(option: tuple[str, str], text: str) -> None:
    backend, name = option
    _parse(backend, f"{name}={quote(text)}")


@settings(max_examples=300)
@given(backend=st.sampled_from(sorted(BACKENDS)), query=st.text(max_size=60))
def test_any_query_string_parses_or_is_a_configuration_error(backend: str, query: str) -> None:
    _parse(backend, query)


@settings(max_examples=300)
@given(backend=st.sampled_from(sorted(BACKENDS)), tail=st.text(max_size=40))
def test_any_url_after_the_scheme_parses_or_is_a_configuration_error(backend: str, tail: str) -> None:
    _, parse, _ = BACKENDS[backend]
    scheme = BACKENDS[backend][0].split("://")[0]
    with contextlib.suppress(ConfigurationError):
        parse(f"{scheme}://{tail}")


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "abc", "1e300"])
def test_busy_timeout_nan_inf_negative_or_text_names_the_option(value: str) -> None:
    with pytest.raises(ConfigurationError, match="busy_timeout"):
        sqlite.parse_url(f"sqlite:///./x.db?busy_timeout={value}")


@pytest.mark.parametrize(
    ("backend", "name"), [(b, n) for b, n in OPTIONS if n.endswith(("timeout", "interval", "window", "wait", "age"))]
)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_every_duration_refuses_nan_and_infinities_naming_the_option(backend: str, name: str, value: str) -> None:
    base, parse, _ = BACKENDS[backend]
    with pytest.raises(ConfigurationError, match=name):
        parse(f"{base}?{name}={value}")


def test_an_unknown_option_and_a_repeated_option_are_named() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown sqlite broker option 'bogus'.*known options: "):
        sqlite.parse_url("sqlite:///./x.db?bogus=1")
    with pytest.raises(ConfigurationError, match="partitions is given twice"):
        sqlite.parse_url("sqlite:///./x.db?partitions=2&partitions=3")


def test_configs_built_in_code_refuse_nan_and_huge_numbers_too() -> None:
    with pytest.raises(ConfigurationError, match="busy_timeout"):
        sqlite.SqliteConfig(busy_timeout=math.nan)
    with pytest.raises(ConfigurationError, match="lease_timeout"):
        redis.RedisConfig(lease_timeout=10**400)
    with pytest.raises(ConfigurationError, match="request_timeout"):
        kafka.KafkaConfig(request_timeout=1e12)  # Kafka takes 32-bit milliseconds
    with pytest.raises(ConfigurationError, match=r"state_topic|topic name"):
        kafka.KafkaConfig(state_topic="state\n")
    with pytest.raises(ConfigurationError, match="prefix"):
        nats.NatsConfig(prefix="choreo\n")


@pytest.mark.parametrize("backend", ["sqlite", "nats", "redis", "kafka", "memory"])
def test_a_partition_count_past_the_ceiling_is_refused(backend: str) -> None:
    base, parse, _ = BACKENDS[backend]
    parse(f"{base}?partitions=10000")
    with pytest.raises(ConfigurationError, match="partitions must be at most 10000"):
        parse(f"{base}?partitions=10001")
