"""Settings of the Kafka broker and the ``kafka://`` URL form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Final

from choreograph.core.credentials import TlsSettings, check_secret_options, resolve_secret
from choreograph.core.errors import ConfigurationError
from choreograph.core.names import check_topic
from choreograph.core.options import (
    MAX_MILLIS_SECONDS,
    MAX_PARTITIONS,
    require_positive,
    require_positive_int,
    split_url,
)
from choreograph.core.redaction import redact_url
from choreograph.core.retention import DEFAULT_RETENTION, check_retention, parse_retention
from choreograph.core.url_options import Url, parse_options, url_options

SASL_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """How the Kafka broker creates topics, produces, joins groups and keeps its state topic."""

    partitions: int = 8
    """Partitions of a topic this broker auto-creates (existing topics keep theirs)."""
    replication_factor: int = 1
    """Replication factor of auto-created topics."""
    idempotent: bool = True
    """Use the idempotent producer (``enable.idempotence``); off for brokers without InitProducerId."""
    acks: str = "all"
    """Producer acks: ``all`` (durable on every in-sync replica), ``1`` or ``0``."""
    session_timeout: float = 10.0
    """Seconds a silent group member keeps its partitions (Kafka ``session.timeout.ms``)."""
    heartbeat_interval: float = 3.0
    """Seconds between group heartbeats."""
    state_topic: str = "__choreograph_state"
    """Compacted topic holding inbox keys, retry attempts, dead letters and group registrations."""
    client_id: str = "choreograph"
    """Client id sent to the brokers."""
    request_timeout: float = 30.0
    """Seconds to wait for a broker answer."""
    inbox_retention: float = 7 * 24 * 3600.0
    """Seconds a dedupe key stays in a group's inbox; older inbox records are deleted from the state topic."""
    retention: Annotated[float | None, Url(parse=parse_retention)] = DEFAULT_RETENTION
    """Seconds records are kept in topics this broker creates (their ``retention.ms``; default 7 days;
    ``None`` or ``0``: forever). Kafka deletes by age whether or not groups have read them."""
    servers: Annotated[tuple[str, ...], Url(refuse="the servers are the URL's hosts: kafka://host:port,host:port")] = (
        field(default=("localhost:9092",), compare=False)
    )
    """Bootstrap servers, ``host:port`` each (``parse_url`` sets them); two configs differing only here compare
    equal."""
    persistent: bool = True
    """The cluster keeps acknowledged records across restarts. Set false for a memory-only broker
    (Tansu with ``memory://`` storage), so the declared capabilities stay honest."""
    tls: bool = False
    """Connect with TLS (Kafka ``SSL`` / ``SASL_SSL``). Implied by any ``tls_*`` option."""
    tls_ca: str | None = None
    """PEM file of the CA that signed the brokers' certificates (default: the system's trust store)."""
    tls_cert: str | None = None
    """PEM file of this client's certificate, for brokers with ``ssl.client.auth=required`` (mutual TLS)."""
    tls_key: str | None = None
    """PEM file of the private key of ``tls_cert``."""
    tls_verify: Annotated[str, Url(normalize=str.lower)] = "required"
    """``required`` (CA and host name checked), ``optional`` (CA only) or ``none`` (nothing checked)."""
    sasl_mechanism: Annotated[str | None, Url(normalize=str.upper)] = None
    """``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``; None: no SASL."""
    sasl_username: str | None = None
    """SASL user name."""
    sasl_password: Annotated[
        str | None, Url(refuse="a URL is logged and shown; give sasl_password_file or sasl_password_env")
    ] = field(default=None, repr=False)
    """SASL password (in code; in a URL use ``sasl_password_file`` or ``sasl_password_env``)."""
    sasl_password_file: str | None = None
    """File holding the SASL password (one trailing newline ignored)."""
    sasl_password_env: str | None = None
    """Environment variable holding the SASL password."""

    def __post_init__(self) -> None:
        if (
            isinstance(self.servers, str)
            or not self.servers
            or not all(isinstance(s, str) and ":" in s for s in self.servers)
        ):
            raise ConfigurationError(f"servers must be a non-empty list of host:port, got {self.servers!r}")
        object.__setattr__(self, "servers", tuple(self.servers))  # frozen: set once, here
        require_positive_int("partitions", self.partitions, at_most=MAX_PARTITIONS)
        require_positive_int("replication_factor", self.replication_factor)
        if self.acks not in {"all", "1", "0"}:
            raise ConfigurationError(f"acks must be 'all', '1' or '0', got {self.acks!r}")
        if self.idempotent and self.acks != "all":
            raise ConfigurationError("the idempotent producer needs acks='all'; set idempotent=false to change acks")
        for name in ("session_timeout", "heartbeat_interval", "request_timeout"):  # Kafka takes 32-bit ms
            require_positive(name, getattr(self, name), at_most=MAX_MILLIS_SECONDS)
        require_positive("inbox_retention", self.inbox_retention)
        object.__setattr__(self, "retention", check_retention("retention", self.retention))  # frozen: once, here
        if self.heartbeat_interval >= self.session_timeout:
            raise ConfigurationError("heartbeat_interval must be shorter than session_timeout")
        check_topic(self.state_topic)
        if not isinstance(self.client_id, str) or not self.client_id or not self.client_id.isprintable():
            raise ConfigurationError(f"client_id must be a non-empty printable string, got {self.client_id!r}")
        self._check_security()

    def _check_security(self) -> None:
        if not isinstance(self.tls, bool):
            raise ConfigurationError("tls must be true or false")
        self.tls_settings()
        check_secret_options("sasl_password", self.sasl_password, self.sasl_password_file, self.sasl_password_env)
        has_password = any(v is not None for v in (self.sasl_password, self.sasl_password_file, self.sasl_password_env))
        if self.sasl_mechanism is None:
            if self.sasl_username is not None or has_password:
                raise ConfigurationError(f"SASL credentials need sasl_mechanism (one of {', '.join(SASL_MECHANISMS)})")
            return
        if self.sasl_mechanism not in SASL_MECHANISMS:
            raise ConfigurationError(
                f"sasl_mechanism must be one of {', '.join(SASL_MECHANISMS)}, got {self.sasl_mechanism!r}"
            )
        if not isinstance(self.sasl_username, str) or not self.sasl_username or not has_password:
            raise ConfigurationError(
                "SASL needs sasl_username and a password (sasl_password, sasl_password_file or sasl_password_env)"
            )

    @property
    def uses_tls(self) -> bool:
        """Whether connections are encrypted: ``tls`` or any ``tls_*`` option."""
        return (
            self.tls
            or any(v is not None for v in (self.tls_ca, self.tls_cert, self.tls_key))
            or self.tls_verify != "required"
        )

    def tls_settings(self) -> TlsSettings:
        """The TLS options as one checked value."""
        return TlsSettings(self.tls_ca, self.tls_cert, self.tls_key, self.tls_verify)

    def security_options(self) -> dict[str, Any]:
        """aiokafka keyword arguments for TLS and SASL, the password read from its file or variable.

        ``security_protocol`` is ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or
        ``SASL_SSL`` from the options given. Raises ConfigurationError naming an
        unreadable certificate, key, password file or variable.
        """
        sasl = self.sasl_mechanism is not None
        protocol = {(False, False): "PLAINTEXT", (True, False): "SSL", (False, True): "SASL_PLAINTEXT"}.get(
            (self.uses_tls, sasl), "SASL_SSL"
        )
        options: dict[str, Any] = {"security_protocol": protocol}
        if self.uses_tls:
            options["ssl_context"] = self.tls_settings().context()
        if sasl:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = resolve_secret(
                "sasl_password", self.sasl_password, self.sasl_password_file, self.sasl_password_env
            )
        return options


_OPTIONS: Final = url_options(KafkaConfig, "kafka")
"""The URL options: every field but the inline password, read by its type (see :mod:`choreograph.core.url_options`)."""
_PARSERS: Final = dict(_OPTIONS.readers)
"""Every option name a URL accepts, with its reader."""


def parse_url(url: str) -> tuple[list[str], KafkaConfig]:
    """Split ``kafka://host:port[,host:port...]?option=value`` into bootstrap servers and a config."""
    parts = split_url(url, "kafka")
    if parts.scheme != "kafka":
        raise ConfigurationError(f"not a kafka URL (expected kafka://host:port[,host:port]): {redact_url(url)!r}")
    if "@" in parts.netloc:
        raise ConfigurationError(
            "kafka URLs take no credentials (user:password@): give them as options, e.g. "
            "?sasl_mechanism=SCRAM-SHA-512&sasl_username=app&sasl_password_file=/run/secrets/kafka"
        )
    servers = [s.strip() for s in parts.netloc.split(",") if s.strip()]
    if not servers or any(":" not in s for s in servers):
        raise ConfigurationError(
            f"kafka URL needs host:port bootstrap servers, e.g. kafka://localhost:9092: {redact_url(url)!r}"
        )
    if parts.path not in ("", "/"):
        raise ConfigurationError(f"kafka URL takes no path, got {parts.path!r} in {redact_url(url)!r}")
    options = parse_options(_OPTIONS, parts.query)
    return servers, KafkaConfig(servers=tuple(servers), **options)
