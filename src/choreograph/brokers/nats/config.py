"""Settings of the NATS JetStream broker and the ``nats://`` URL form."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Final
from urllib.parse import unquote

from choreograph.core.credentials import TlsSettings, check_secret_options, resolve_secret
from choreograph.core.errors import ConfigurationError, MissingExtraError
from choreograph.core.options import (
    MAX_PARTITIONS,
    require_positive,
    require_positive_int,
    split_url,
)
from choreograph.core.redaction import redact_url
from choreograph.core.retention import DEFAULT_RETENTION, check_retention, parse_retention
from choreograph.core.url_options import Url, parse_options, url_options

STORAGE_KINDS: Final = ("file", "memory")
_SECRET: Final = "a URL is logged and shown; give {0}_file or {0}_env"
_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,31}")  # fullmatch: "$" would let a final newline through


@dataclass(frozen=True, slots=True)
class NatsConfig:
    """How the NATS broker maps onto JetStream and how it tunes delivery. Validated on construction.

    Durability: a publish returns once the stream's leader (and, with
    ``replicas`` > 1, a quorum of replicas) has stored it. JetStream writes to
    its files at once but fsyncs them only every ``sync_interval`` of the
    *server* (2 minutes by default): an acknowledged publish survives a
    kill -9 of the server process, but on power loss a single node may lose
    the last interval. Use ``replicas=3`` (a quorum on separate machines) or
    run the servers with ``sync_interval: always`` when that matters.
    """

    servers: Annotated[tuple[str, ...], Url(refuse="the servers are the URL's hosts: nats://host:port,host:port")] = (
        "nats://127.0.0.1:4222",
    )
    """Server URLs, without credentials; the client picks one and fails over to the others."""
    user: str | None = None
    """User name sent to every server (with ``password``)."""
    password: Annotated[str | None, Url(refuse=_SECRET.format("password"))] = field(default=None, repr=False)
    """Password of ``user``, exactly as the server knows it (decoded once from the URL)."""
    token: Annotated[str | None, Url(refuse=_SECRET.format("token"))] = field(default=None, repr=False)
    """Authentication token (``nats://TOKEN@host``), instead of a user and password."""
    password_file: str | None = None
    """File holding the password of ``user`` (instead of ``password``; one trailing newline ignored)."""
    password_env: str | None = None
    """Environment variable holding the password of ``user`` (instead of ``password``)."""
    token_file: str | None = None
    """File holding the token (instead of ``token``)."""
    token_env: str | None = None
    """Environment variable holding the token (instead of ``token``)."""
    nkey_seed: Annotated[str | None, Url(refuse=_SECRET.format("nkey_seed"))] = field(default=None, repr=False)
    """NKey user seed (``SU...``): the client signs the server's nonce with it; the server knows the public key."""
    nkey_seed_file: str | None = None
    """File holding the NKey seed (instead of ``nkey_seed``)."""
    nkey_seed_env: str | None = None
    """Environment variable holding the NKey seed (instead of ``nkey_seed``)."""
    credentials_file: str | None = None
    """A ``.creds`` file (user JWT and NKey seed, as ``nsc`` writes it) for servers in operator (JWT) mode."""
    tls: bool = False
    """Require TLS. Implied by a ``tls://`` URL and by any ``tls_*`` option; refused if the server offers none."""
    tls_ca: str | None = None
    """PEM file of the CA(s) that signed the servers' certificates (default: the system's trust store)."""
    tls_cert: str | None = None
    """PEM file of this client's certificate, for servers that verify clients (mutual TLS)."""
    tls_key: str | None = None
    """PEM file of the private key of ``tls_cert`` (omit if ``tls_cert`` holds both)."""
    tls_verify: Annotated[str, Url(normalize=str.lower)] = "required"
    """``required`` (CA and host name checked), ``optional`` (CA only) or ``none`` (nothing: tests only)."""
    tls_server_name: str | None = None
    """Name expected in the servers' certificates when it differs from the host connected to."""
    tls_handshake_first: bool = False
    """Start TLS before the server's greeting (server option ``handshake_first``): nothing, not even the
    greeting, travels in the clear, and no one on the path can strip the server's demand for TLS."""
    prefix: str = "choreo"
    """Namespace of every stream, subject, consumer and bucket this broker creates."""
    partitions: int = 8
    """Partitions (subjects) of a topic created by this broker; existing topics keep theirs."""
    replicas: int = 1
    """Replicas of every stream and bucket (1, or 3/5 on a cluster)."""
    storage: Annotated[str, Url(normalize=str.lower)] = "file"
    """``"file"`` (persistent) or ``"memory"`` (lost when the server stops)."""
    retention: Annotated[float | None, Url(parse=parse_retention)] = DEFAULT_RETENTION
    """Seconds a record is retained in a topic: the stream's ``max_age`` (default 7 days; ``None`` or ``0``:
    forever). JetStream deletes by age whether or not every group has read a record. Applies to streams
    this broker creates; an existing stream keeps its limits."""
    max_age: Annotated[float | None, Url(refuse="it is the deprecated spelling of retention")] = None
    """Deprecated alias of ``retention``: when given, it is the retention."""
    duplicate_window: float = 120.0
    """Seconds JetStream remembers ``Nats-Msg-Id`` values to drop duplicate publishes."""
    ack_wait: float = 30.0
    """Seconds a delivery may stay unsettled before JetStream redelivers it (held ones are kept alive)."""
    lease_timeout: float = 6.0
    """Seconds a member keeps its partitions without heartbeating; then the others take them."""
    inbox_retention: float = 7 * 24 * 3600.0
    """Seconds a dedupe key stays in a group's inbox (the inbox bucket's TTL)."""
    dead_letter_retention: float | None = None
    """Seconds a dead letter is kept after its last change (the dead-letter bucket's TTL), whatever
    its status. Applies when this broker creates the bucket; an existing bucket keeps its TTL."""
    prefetch: int = 500
    """Records pulled ahead per owned partition."""
    publish_timeout: float = 10.0
    """Seconds a publish may take in total, retries (deduplicated by message id) included."""
    connect_timeout: float = 2.0
    """Seconds to wait for a server when connecting."""
    request_timeout: float = 5.0
    """Seconds to wait for one JetStream API reply."""
    monitor_url: str | None = None
    """The server's HTTP monitoring endpoint (``http://host:8222``, nats-server ``-m 8222``); when set, metrics
    scrapes read its ``/varz`` and ``/jsz`` (server connections, memory, CPU, slow consumers, JetStream usage)."""

    def __post_init__(self) -> None:
        if not self.servers or not all(isinstance(s, str) and s for s in self.servers):
            raise ConfigurationError(f"servers must be a non-empty list of URLs, got {self.servers!r}")
        for name in ("user", "password", "token"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigurationError(f"{name} must be a non-empty string or None")
        self._check_credentials()
        if not isinstance(self.prefix, str) or not _PREFIX.fullmatch(self.prefix):
            raise ConfigurationError(
                f"prefix must be a letter then up to 31 letters, digits, '_' or '-', got {self.prefix!r}"
            )
        require_positive_int("partitions", self.partitions, at_most=MAX_PARTITIONS)
        require_positive_int("replicas", self.replicas)
        if self.replicas > 5:
            raise ConfigurationError(f"replicas must be at most 5 (JetStream's limit), got {self.replicas}")
        if self.storage not in STORAGE_KINDS:
            raise ConfigurationError(f"storage must be one of {STORAGE_KINDS}, got {self.storage!r}")
        if self.max_age is not None:
            require_positive("max_age", self.max_age)
            object.__setattr__(self, "retention", self.max_age)  # frozen: set once, here
        object.__setattr__(self, "retention", check_retention("retention", self.retention))
        if self.dead_letter_retention is not None:
            require_positive("dead_letter_retention", self.dead_letter_retention)
        for name in (
            "duplicate_window",
            "ack_wait",
            "lease_timeout",
            "inbox_retention",
            "publish_timeout",
            "connect_timeout",
            "request_timeout",
        ):
            require_positive(name, getattr(self, name))
        require_positive_int("prefetch", self.prefetch)
        if self.monitor_url is not None and not self.monitor_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"monitor_url must be an http:// or https:// URL, got {self.monitor_url!r}")
        if self.ack_wait < 1.0:
            raise ConfigurationError(f"ack_wait must be at least 1 second, got {self.ack_wait}")

    def _check_credentials(self) -> None:
        check_secret_options("password", self.password, self.password_file, self.password_env)
        check_secret_options("token", self.token, self.token_file, self.token_env)
        check_secret_options("nkey_seed", self.nkey_seed, self.nkey_seed_file, self.nkey_seed_env)
        has_password = any(v is not None for v in (self.password, self.password_file, self.password_env))
        has_token = any(v is not None for v in (self.token, self.token_file, self.token_env))
        if has_token and (self.user is not None or has_password):
            raise ConfigurationError("give either a token or a user and password, not both")
        if (self.user is None) != (not has_password):
            raise ConfigurationError("user and password go together; give both (or a token alone)")
        methods = [
            name
            for name, given in (
                ("user and password", has_password),
                ("token", has_token),
                ("nkey_seed", any(v is not None for v in (self.nkey_seed, self.nkey_seed_file, self.nkey_seed_env))),
                ("credentials_file", self.credentials_file is not None),
            )
            if given
        ]
        if len(methods) > 1:
            raise ConfigurationError(f"give one way to authenticate, not {' and '.join(methods)}")
        if self.credentials_file is not None and (
            not isinstance(self.credentials_file, str) or not self.credentials_file
        ):
            raise ConfigurationError("credentials_file must be a non-empty string or None")
        for name in ("tls", "tls_handshake_first"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(f"{name} must be true or false")
        self.tls_settings()  # checks the tls_* options

    @property
    def uses_tls(self) -> bool:
        """Whether connections must be encrypted: ``tls``, a ``tls://`` server or any ``tls_*`` option."""
        return (
            self.tls
            or self.tls_handshake_first
            or any(s.startswith("tls://") for s in self.servers)
            or any(v is not None for v in (self.tls_ca, self.tls_cert, self.tls_key, self.tls_server_name))
            or self.tls_verify != "required"
        )

    def tls_settings(self) -> TlsSettings:
        """The TLS options as one checked value."""
        return TlsSettings(self.tls_ca, self.tls_cert, self.tls_key, self.tls_verify, self.tls_server_name)

    def auth_options(self) -> dict[str, Any]:
        """Keyword arguments of ``nats.connect`` for authentication, secrets read from their files or variables.

        Raises ConfigurationError naming the option whose file or variable cannot be read.
        """
        options: dict[str, Any] = {}
        password = resolve_secret("password", self.password, self.password_file, self.password_env)
        if self.user is not None:
            options["user"], options["password"] = self.user, password
        token = resolve_secret("token", self.token, self.token_file, self.token_env)
        if token is not None:
            options["token"] = token
        seed = resolve_secret("nkey_seed", self.nkey_seed, self.nkey_seed_file, self.nkey_seed_env)
        if seed is not None:
            if not seed.strip().startswith("SU"):
                raise ConfigurationError("the NKey seed must be a user seed (it starts with 'SU')")
            options["nkeys_seed_str"] = seed.strip()
        if self.credentials_file is not None:
            try:
                with open(self.credentials_file, "rb"):
                    pass
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot read credentials_file {self.credentials_file!r}: {exc.strerror or exc}"
                ) from None
            options["user_credentials"] = self.credentials_file
        if ("nkeys_seed_str" in options or "user_credentials" in options) and not _has_nkeys():
            raise MissingExtraError("NKey and credentials-file authentication", "nats", "nkeys")
        return options

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between a member's heartbeats: a third of ``lease_timeout``."""
        return self.lease_timeout / 3


_OPTIONS: Final = url_options(NatsConfig, "nats", (("max_age", "retention"),))
"""The URL options: every field but the servers and inline secrets, read by its type
(see :mod:`choreograph.core.url_options`)."""
_PARSERS: Final = {**_OPTIONS.readers, **{old: _OPTIONS.readers[new] for old, new in _OPTIONS.aliases.items()}}
"""Every option name a URL accepts (deprecated aliases included), with its reader."""


def parse_url(url: str) -> NatsConfig:
    """Build a config from ``nats://[user:password@|token@]host:port[,host:port...][?option=value&...]``.

    ``tls://`` instead of ``nats://`` requires TLS. Secrets need not be in the
    URL: ``?user=app&password_file=/run/secrets/nats``, ``?token_env=NATS_TOKEN``,
    ``?nkey_seed_file=...``, ``?credentials_file=...`` (see :class:`NatsConfig`).

    Every host becomes a server URL; the credentials apply to all of them and
    are percent-decoded exactly once (write ``%2F`` for ``/``, ``%40`` for
    ``@``, ``%3A`` for ``:``, ``%25`` for ``%``), then handed to the client as
    they are, never re-embedded in a URL. Unknown options are rejected by name.
    """
    parts = split_url(url, "nats")
    if parts.scheme not in ("nats", "tls"):
        raise ConfigurationError(f"not a nats URL (expected nats://host:port[,host:port]): {redact_url(url)!r}")
    if parts.path not in ("", "/"):
        raise ConfigurationError(f"nats URL takes no path, got {parts.path!r} in {redact_url(url)!r}")
    netloc = parts.netloc
    if not netloc:
        raise ConfigurationError(f"nats URL needs at least one host:port: {redact_url(url)!r}")
    credentials, at, hosts = netloc.rpartition("@")
    servers = []
    for host in hosts.split(","):
        if not host or any(c in host for c in "/?#@") or not host.isprintable():
            raise ConfigurationError(f"bad host {host!r} in the nats URL; write nats://host:port[,host:port]")
        servers.append(f"{parts.scheme}://{host}")
    options: dict[str, Any] = {"servers": tuple(servers)}
    if at:
        user, colon, password = credentials.partition(":")
        if colon:
            options["user"], options["password"] = _decoded(user, "user"), _decoded(password, "password")
        else:
            options["token"] = _decoded(user, "token")
    query = parse_options(_OPTIONS, parts.query)
    if "user" in query and "user" in options:
        raise ConfigurationError("the nats URL gives the user twice (before '@' and as ?user=); give it once")
    options.update(query)
    return NatsConfig(**options)


def _decoded(text: str, what: str) -> str:
    """Percent-decode one credential of a URL, exactly once; refuse an empty or undecodable one."""
    try:
        value = unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise ConfigurationError(f"the {what} in the nats URL is not valid percent-encoded UTF-8") from None
    if not value:
        raise ConfigurationError(f"the {what} in the nats URL is empty")
    return value


def _has_nkeys() -> bool:
    """Whether the nkeys package (nats-py signs NKey challenges with it) is installed."""
    try:
        import nkeys  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return False
    return True
