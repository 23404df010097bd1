"""Broker URLs, options and messages are displayed with their credentials hidden, whatever they contain."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from choreograph.core.redaction import MASK, redact_options, redact_text, redact_url, url_secrets

# A password always starts with a marker that no host, user or option below can contain,
# so "the password is not in the output" is a real check even for one-character passwords.
MARK = "Qz"
SCHEMES = st.sampled_from(["redis", "rediss", "nats", "kafka", "amqp", "http"])
HOSTS = st.from_regex(r"[a-z][a-z0-9.\-]{0,20}(:[0-9]{1,5})?", fullmatch=True)
USERS = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
ANY_TEXT = st.text(min_size=0, max_size=30)
# Raw (not percent-encoded) passwords: everything but the URL delimiters that end an authority.
RAW_TEXT = st.text(alphabet=st.characters(blacklist_characters="?#"), max_size=30)
TAILS = st.sampled_from(["", "/0", "/", "?partitions=4", "/0?socket_timeout=1", "?prefix=x&replicas=1"])
SECRET_OPTIONS = st.sampled_from(["password", "sasl_password", "token", "nkey", "seed", "creds", "secret", "api_key"])


def _absent(secret: str, output: str) -> bool:
    return secret not in output and quote(secret, safe="") not in output


@settings(max_examples=500)
@given(SCHEMES, USERS, ANY_TEXT, HOSTS, TAILS)
def test_an_encoded_password_never_appears(scheme: str, user: str, password: str, host: str, tail: str) -> None:
    # Given a URL whose password (any characters) is percent-encoded, as RFC 3986 asks
    secret = MARK + password
    url = f"{scheme}://{user}:{quote(secret, safe='')}@{host}{tail}"

    # When it is displayed
    shown = redact_url(url)

    # Then neither form of the password is there, and the user, host and options are
    assert _absent(secret, shown), shown
    assert shown == f"{scheme}://{user}:{MASK}@{host}{tail}"


@settings(max_examples=500)
@given(SCHEMES, USERS, RAW_TEXT, HOSTS, TAILS)
def test_a_raw_password_with_reserved_characters_never_appears(
    scheme: str, user: str, password: str, host: str, tail: str
) -> None:
    # Given a password written as is, with '@', ':', '/', '%', spaces, newlines...
    secret = MARK + password
    url = f"{scheme}://{user}:{secret}@{host}{tail}"

    # When it is displayed, then it is hidden
    shown = redact_url(url)
    assert MARK not in shown, shown
    assert shown.endswith(f"@{host}{tail}")


@settings(max_examples=300)
@given(SCHEMES, ANY_TEXT, HOSTS)
def test_a_lone_token_in_the_userinfo_never_appears(scheme: str, token: str, host: str) -> None:
    secret = MARK + token
    shown = redact_url(f"{scheme}://{quote(secret, safe='')}@{host}")
    assert _absent(secret, shown)
    assert shown == f"{scheme}://{MASK}@{host}"


@settings(max_examples=300)
@given(SCHEMES, HOSTS, SECRET_OPTIONS, ANY_TEXT)
def test_a_credential_option_never_appears(scheme: str, host: str, option: str, value: str) -> None:
    # Given a credential passed as a query option between two ordinary ones
    secret = MARK + value
    url = f"{scheme}://{host}?partitions=4&{option}={quote(secret, safe='')}&client_id=a@b"

    shown = redact_url(url)

    assert _absent(secret, shown)
    assert shown == f"{scheme}://{host}?partitions=4&{option}={MASK}&client_id=a@b"


@settings(max_examples=1000)
@given(st.text(max_size=200))
def test_never_raises_on_garbage(text: str) -> None:
    assert isinstance(redact_url(text), str)
    assert isinstance(redact_text(text, text), str)
    assert isinstance(url_secrets(text), list)


@settings(max_examples=300)
@given(SCHEMES, USERS, ANY_TEXT, HOSTS)
def test_a_library_message_quoting_the_password_is_scrubbed(scheme: str, user: str, password: str, host: str) -> None:
    # Given an error message from a client library that repeats the URL and the decoded password
    secret = MARK + password
    url = f"{scheme}://{user}:{quote(secret, safe='')}@{host}"
    message = f"cannot connect to {url} (auth {secret!r} refused; raw {secret})"

    shown = redact_text(message, url)

    assert MARK not in shown, shown
    assert host in shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("sqlite:///./data/a@b.db?busy_timeout=5", "sqlite:///./data/a@b.db?busy_timeout=5"),
        ("memory://?partitions=4", "memory://?partitions=4"),
        ("nats://u:p@h1:4222,h2:4222", f"nats://u:{MASK}@h1:4222,h2:4222"),
        ("redis://:only-password@h:6379/0", f"redis://{MASK}@h:6379/0"),
        ("nats://h:4222#token", f"nats://h:4222#{MASK}"),
        ("kafka://h:9092?client_id=me@example.com", "kafka://h:9092?client_id=me@example.com"),
    ],
)
def test_urls_without_or_with_credentials_keep_what_an_operator_needs(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_an_nkey_seed_is_hidden_wherever_it_is() -> None:
    seed = "SUAMK2FG4MI6UE3ACF3FK3OIQBCEIEZV7NSWFFEW63UXMRLFM2XLAXK4GY"
    assert seed not in redact_url(f"nats://h:4222?x={seed}")
    assert seed not in redact_text(f"bad seed {seed}")


def test_options_are_masked_by_name_and_urls_inside_them_redacted() -> None:
    options = {
        "servers": ("nats://u:pw1@h:4222",),
        "sasl_password": "pw2",
        "prefix": "choreo",
        "nested": {"token": "pw3", "url": "redis://:pw4@h"},
        "partitions": 8,
    }
    shown = redact_options(options)
    assert "pw" not in repr(shown)
    assert shown["prefix"] == "choreo"
    assert shown["partitions"] == 8
    assert shown["servers"] == (f"nats://u:{MASK}@h:4222",)


@settings(max_examples=300)
@given(
    SCHEMES,
    USERS,
    st.text(alphabet=st.characters(blacklist_categories=("Z", "C"), blacklist_characters="/?#@'\"<>&;"), max_size=20),
    HOSTS,
)
def test_urls_inside_free_text_lose_their_credentials_without_being_named(
    scheme: str, user: str, password: str, host: str
) -> None:
    # Given a log line quoting a URL that the caller does not know about (its password
    # free of the characters that end a URL in prose, and of '&' and ';' that end an option)
    secret = MARK + password
    line = f"observer state kept for {scheme}://{user}:{secret}@{host}/x?token={secret}&a=1; retrying"

    shown = redact_text(line)

    assert MARK not in shown, shown
    assert f"{scheme}://{user}:{MASK}@{host}/x?token={MASK}&a=1; retrying" in shown
