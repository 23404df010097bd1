"""The naming rule for topics, groups, event types and services (core/names.py)."""

from __future__ import annotations

import contextlib
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from choreograph import App, ConfigurationError, ContractError, Event
from choreograph.core.names import MAX_LENGTH, check_event_type, check_group, check_service, check_topic

ALLOWED = string.ascii_letters + string.digits + "._-"


@pytest.mark.parametrize(
    "name",
    ["t", "orders", "shop.order.placed", "conformance.a14.0123abcd", "group-x-1", "svc.handle_it", "__state", "a..b"],
)
def test_ordinary_names_pass(name: str) -> None:
    assert check_topic(name) == name
    assert check_group(name) == name


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("x\n", "contains a newline"),
        ("a b", "contains a space"),
        ("a\x07", "control character U+0007"),
        ("a}b", "contains the character '}'"),
        ("a{b", "contains the character '{'"),
        ("a:b", "contains the character ':'"),
        ("a*", "contains the character '*'"),
        ("a>", "contains the character '>'"),
        ("é", "non-ASCII character"),
        (".a", "starts with '.'"),
        ("a.", "ends with '.'"),
        ("..", "starts with '.'"),
        ("", "must not be empty"),
    ],
)
def test_a_bad_topic_is_refused_naming_the_rule_and_the_fix(name: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        check_topic(name)
    message = str(raised.value)
    assert problem in message
    assert "letters, digits, '.', '_' or '-'" in message
    assert "\n" not in message  # the name is quoted with repr, never raw


def test_a_huge_name_is_refused_by_length_with_a_short_message() -> None:
    huge = "a" * 1_000_000
    with pytest.raises(ConfigurationError, match=r"is 1000000 characters long; use at most 249") as raised:
        check_topic(huge)
    assert len(str(raised.value)) < 200
    assert check_topic("a" * MAX_LENGTH) == "a" * MAX_LENGTH
    with pytest.raises(ConfigurationError, match="250 characters"):
        check_group("a" * (MAX_LENGTH + 1))


@pytest.mark.parametrize("value", [None, 5, b"topic", ["t"]])
def test_a_name_that_is_not_a_string_is_a_configuration_error(value: object) -> None:
    with pytest.raises(ConfigurationError, match="must be a string"):
        check_topic(value)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="must be a string"):
        check_group(value)  # type: ignore[arg-type]


@given(st.text(max_size=300))
def test_any_text_is_a_valid_name_or_a_configuration_error_never_another_exception(text: str) -> None:
    for check in (check_topic, check_group, check_event_type, check_service):
        with contextlib.suppress(ConfigurationError):
            assert check(text) == text


@given(st.text(alphabet=ALLOWED, min_size=1, max_size=MAX_LENGTH))
def test_the_documented_rule_is_exactly_what_is_accepted(text: str) -> None:
    valid = not text.startswith(".") and not text.endswith(".")
    try:
        check_topic(text)
        accepted = True
    except ConfigurationError:
        accepted = False
    assert accepted == valid


def test_event_type_and_topic_are_checked_at_declaration() -> None:
    with pytest.raises(ConfigurationError, match="contains a newline") as raised:

        class Newline(Event, type="shop.order.placed\n"):
            x: int

    assert isinstance(raised.value, ContractError)  # declaration errors stay ContractErrors too
    with pytest.raises(ConfigurationError, match=r"topic name .* contains the character '}'"):

        class BadTopic(Event, type="shop.order.placed", topic="shop}orders"):
            x: int

    class Fine(Event, type="shop.order.placed", topic="shop.orders"):
        x: int

    assert Fine.topic() == "shop.orders"


@pytest.mark.parametrize("bad", ["_x", "x-", "x."])
def test_an_event_type_starts_and_ends_with_a_letter_or_digit(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="starting and ending with a letter or digit"):
        check_event_type(bad)


@pytest.mark.parametrize("bad", ["orders\n", "Orders", "1orders", "or ders", "o" * 250])
def test_a_bad_service_name_is_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="service name"):
        App().service(bad)
    assert App().service("orders-v2_x").name == "orders-v2_x"


@pytest.mark.parametrize("name", ["bad name", "x:y", "é"])
def test_a_handler_whose_group_would_be_refused_is_refused_at_registration(name: str) -> None:
    class Pinged(Event, type="t.names.pinged"):
        n: int

    service = App().service("svc")
    with pytest.raises(ConfigurationError, match="consumer group name 'svc"):

        @service.on(Pinged, name=name)
        async def handle(event: Pinged, ctx: object) -> None:
            pass
