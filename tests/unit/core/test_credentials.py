"""Secret indirection (value, file, environment), TLS settings, and the redaction of every secret option."""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from choreograph.brokers import open_broker
from choreograph.brokers.kafka.config import KafkaConfig
from choreograph.brokers.nats.config import NatsConfig
from choreograph.brokers.nats.config import parse_url as parse_nats
from choreograph.brokers.redis import RedisBroker
from choreograph.brokers.redis.config import RedisConfig
from choreograph.brokers.redis.config import parse_url as parse_redis
from choreograph.core.credentials import TlsSettings, explain_tls_failure, resolve_secret
from choreograph.core.errors import ConfigurationError
from choreograph.core.redaction import is_secret_name, redact_options, redact_url


def test_a_secret_comes_from_its_value_file_or_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "secret"
    secret.write_text("line one\nline two\r\n")  # only the final line break goes
    monkeypatch.setenv("TEST_SECRET", "from env")
    assert resolve_secret("password", "inline", None, None) == "inline"
    assert resolve_secret("password", None, str(secret), None) == "line one\nline two"
    assert resolve_secret("password", None, None, "TEST_SECRET") == "from env"
    assert resolve_secret("password", None, None, None) is None


def test_each_failure_names_the_option_and_never_the_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    monkeypatch.delenv("TEST_UNSET", raising=False)
    monkeypatch.setenv("TEST_EMPTY", "")
    cases = [
        (("token", "a", str(empty), None), "give only one of token / token_file"),
        (("token", None, str(tmp_path / "nope"), None), "cannot read token_file .*No such file"),
        (("token", None, str(empty), None), "token_file .* is empty"),
        (
            ("token", None, None, "TEST_UNSET"),
            "token_env names the environment variable 'TEST_UNSET', which is not set",
        ),
        (("token", None, None, "TEST_EMPTY"), "which is empty"),
        (("token", "", None, None), "token must be a non-empty string"),
    ]
    for arguments, message in cases:
        with pytest.raises(ConfigurationError, match=message):
            resolve_secret(*arguments)


def test_tls_settings_are_checked_and_load_errors_name_the_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="tls_verify must be one of required, optional, none"):
        TlsSettings(verify="sometimes")
    with pytest.raises(ConfigurationError, match="tls_key needs tls_cert"):
        TlsSettings(key="k.pem")
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ConfigurationError, match="cannot load tls_ca"):
        TlsSettings(ca=str(garbage)).context()
    with pytest.raises(ConfigurationError, match="cannot load the client certificate tls_cert"):
        TlsSettings(cert=str(garbage)).context()
    assert TlsSettings(verify="optional").context().verify_mode == ssl.CERT_OPTIONAL


@given(st.text(max_size=80))
def test_explaining_any_other_failure_never_raises(text: str) -> None:
    for error in (OSError(text), ValueError(text), ssl.SSLError(1, text)):
        explained = explain_tls_failure(error, "somewhere")
        assert explained is None or explained.startswith("TLS handshake with somewhere failed")


def test_a_wrapped_verification_failure_is_found_through_the_cause() -> None:
    inner = ssl.SSLCertVerificationError(1, "certificate verify failed")
    inner.verify_message = "unable to get local issuer certificate"
    try:
        try:
            raise inner
        except ssl.SSLError as exc:
            raise ConnectionError("client gave up") from exc
    except ConnectionError as outer:
        message = explain_tls_failure(outer, "nats://h:4222")
    assert message == (
        "TLS handshake with nats://h:4222 failed: the server's certificate is not trusted "
        "(unable to get local issuer certificate); set tls_ca to the CA file that signed the server's certificate"
    )


SECRET_OPTIONS = [
    "password", "password_file", "password_env", "token", "token_file", "token_env",
    "nkey_seed", "nkey_seed_file", "nkey_seed_env", "credentials_file",
    "sasl_password", "sasl_password_file", "sasl_password_env",
]  # fmt: skip


@pytest.mark.parametrize("name", SECRET_OPTIONS)
def test_every_secret_option_is_redacted(name: str) -> None:
    assert is_secret_name(name)
    assert "hunter2" not in redact_url(f"nats://h:4222?{name}=hunter2")


def test_every_hidden_config_field_is_a_secret_name() -> None:
    # a field kept out of repr holds a secret: redaction must know its name too
    for config in (NatsConfig, RedisConfig, KafkaConfig):
        for field in dataclasses.fields(config):  # type: ignore[arg-type]
            if not field.repr:
                assert is_secret_name(field.name), (config.__name__, field.name)
    assert "hunter2" not in repr(NatsConfig(nkey_seed="hunter2"))
    assert redact_options({"nkey_seed": "SUAB", "tls_ca": "/etc/ca.pem"}) == {
        "nkey_seed": "***",
        "tls_ca": "/etc/ca.pem",
    }


def test_nats_url_options() -> None:
    config = parse_nats("tls://a:4222,b:4222?user=app&password_env=P&tls_server_name=nats.internal")
    assert config.servers == ("tls://a:4222", "tls://b:4222")
    assert config.uses_tls and config.tls_server_name == "nats.internal"
    assert not parse_nats("nats://a:4222").uses_tls
    assert parse_nats("nats://a:4222?tls_ca=/ca.pem").uses_tls
    for url, message in [
        ("nats://u:p@a:4222?user=v", "gives the user twice"),
        ("nats://u:p@a:4222?password_file=/f", "give only one of password / password_file"),
        ("nats://a:4222?token_env=T&nkey_seed_file=/s", "give one way to authenticate, not token and nkey_seed"),
        ("nats://a:4222?password_file=/f", "user and password go together"),
        ("nats://a:4222?tls_verify=off", "tls_verify must be one of"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            parse_nats(url)


def test_an_nkey_seed_that_is_not_a_user_seed_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="must be a user seed"):
        NatsConfig(nkey_seed="SAAGNJOZTRPYYXG2NJX3ZNGXYUSDYX2BWO447W3SHG6XQ7U66RWHQ3JUXM").auth_options()


def test_rediss_opens_from_the_url_the_cli_and_app_use(tmp_path: Path) -> None:
    (tmp_path / "p").write_text("secret")
    broker = open_broker(f"rediss://app@cache:6380/0?password_file={tmp_path}/p&tls_ca=/ca.pem&tls_verify=optional")
    assert isinstance(broker, RedisBroker)
    assert broker.config.tls_ca == "/ca.pem" and broker.config.tls_verify == "optional"


def test_redis_tls_options_need_rediss_and_credentials_are_given_once() -> None:
    with pytest.raises(ConfigurationError, match="write rediss:// instead of redis://"):
        parse_redis("redis://h:6379/0?tls_ca=/ca.pem")
    with pytest.raises(ConfigurationError, match="password is given twice"):
        parse_redis("redis://u:p@h:6379/0?password_env=X")
    with pytest.raises(ConfigurationError, match="user is given twice"):
        parse_redis("redis://u@h:6379/0?username=v")
