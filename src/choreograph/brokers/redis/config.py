"""Settings of the Redis Streams broker and the ``redis://`` URL form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Final
from urllib.parse import unquote, urlunsplit

from choreograph.core.credentials import TlsSettings, check_secret_options
from choreograph.core.errors import ConfigurationError
from choreograph.core.options import (
    MAX_PARTITIONS,
    require_lease,
    require_positive,
    require_positive_int,
    split_url,
)
from choreograph.core.redaction import redact_url
from choreograph.core.retention import DEFAULT_RETENTION, check_retention, parse_retention
from choreograph.core.url_options import Url, parse_options, url_options


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """How the Redis broker names keys, partitions topics, leases partitions and trims. Validated on construction.

    Durability is the server's: run Redis with ``appendonly yes`` and
    ``appendfsync always`` to make every acknowledged publish and settlement
    survive a crash of the Redis process (``everysec`` may lose the last second).
    """

    prefix: str = "chor"
    """First segment of every key, so several apps can share one Redis database."""
    partitions: int = 8
    """Partitions (streams) of a topic created by this broker; existing topics keep theirs."""
    lease_timeout: float = 10.0
    """Seconds a member keeps its partitions without heartbeating; then survivors take them."""
    heartbeat_interval: float | None = None
    """Seconds between heartbeats; ``None`` means ``lease_timeout / 3``."""
    poll_interval: float = 0.1
    """Longest a fetch blocks in one XREADGROUP before it checks retries and membership again."""
    inbox_retention: float = 7 * 24 * 3600.0
    """Seconds a dedupe key stays in a group's inbox."""
    retention_max_records: int | None = None
    """Keep about this many records per partition: each publish trims the streams it wrote to
    (``XTRIM MAXLEN ~``). The same setting as SQLite's ``retention_max_records``."""
    max_length: Annotated[int | None, Url(refuse="it is the deprecated spelling of retention_max_records")] = None
    """Deprecated alias of ``retention_max_records``: when given, it is the limit."""
    retention: Annotated[float | None, Url(parse=parse_retention)] = DEFAULT_RETENTION
    """Trim entries older than this many seconds (``XTRIM MINID``; default 7 days; ``None`` or ``0``: keep
    forever), every ``retention_interval``, whether or not every group has read them."""
    max_age: Annotated[float | None, Url(refuse="it is the deprecated spelling of retention")] = None
    """Deprecated alias of ``retention``: when given, it is the retention."""
    retention_interval: float = 60.0
    """Seconds between trims of old inbox keys and old entries."""
    dead_letter_retention: float | None = None
    """Seconds a dead letter is kept after it was stored, whatever its status; then a publishing
    broker's periodic trim (every ``retention_interval``) deletes it. ``None``: until deleted."""
    connect_timeout: float = 5.0
    """Seconds to wait for a connection before raising BrokerUnavailable."""
    username: str | None = None
    """ACL user (instead of ``user@`` in the URL); without it, Redis authenticates ``default``."""
    password: Annotated[
        str | None,
        Url(
            refuse="a URL is logged and shown; put it before the host (redis://user:PASSWORD@host) "
            "or give password_file or password_env"
        ),
    ] = field(default=None, repr=False)
    """Password of the ACL user (or ``requirepass``), when not in the URL."""
    password_file: str | None = None
    """File holding the password (one trailing newline ignored)."""
    password_env: str | None = None
    """Environment variable holding the password."""
    tls_ca: str | None = None
    """PEM file of the CA that signed the server's certificate (``rediss://`` only; default: system store)."""
    tls_cert: str | None = None
    """PEM file of this client's certificate, for a server with ``tls-auth-clients yes`` (mutual TLS)."""
    tls_key: str | None = None
    """PEM file of the private key of ``tls_cert``."""
    tls_verify: Annotated[str, Url(normalize=str.lower)] = "required"
    """``required`` (CA and host name checked), ``optional`` (CA only) or ``none`` (nothing checked)."""
    url: Annotated[str, Url(refuse="the server is the broker URL itself")] = field(
        default="redis://localhost:6379/0", compare=False
    )
    """The server, ``redis[s]://[user:password@]host:port/db`` without options (``parse_url`` sets it).
    It may hold credentials: its repr is redacted. Two configs differing only here compare equal."""

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url:
            raise ConfigurationError("url must be a redis:// or rediss:// URL")
        object.__setattr__(self, "url", _RedactedUrl(self.url))  # frozen: set once, here
        if (
            not isinstance(self.prefix, str)
            or not self.prefix
            or not self.prefix.isprintable()
            or any(c in self.prefix for c in "{} ")
        ):
            raise ConfigurationError(
                f"prefix must be non-empty, printable, without spaces or braces, got {self.prefix!r}"
            )
        require_positive_int("partitions", self.partitions, at_most=MAX_PARTITIONS)
        require_lease(self.lease_timeout, self.heartbeat_interval)
        require_positive("poll_interval", self.poll_interval)
        require_positive("inbox_retention", self.inbox_retention)
        if self.dead_letter_retention is not None:
            require_positive("dead_letter_retention", self.dead_letter_retention)
        if self.max_length is not None:
            if self.retention_max_records is not None:
                raise ConfigurationError(
                    "max_length and retention_max_records are the same setting; give only retention_max_records"
                )
            require_positive_int("max_length", self.max_length)
            object.__setattr__(self, "retention_max_records", self.max_length)  # frozen: set once, here
        if self.retention_max_records is not None:
            require_positive_int("retention_max_records", self.retention_max_records)
        if self.max_age is not None:
            require_positive("max_age", self.max_age)
            object.__setattr__(self, "retention", self.max_age)  # frozen: set once, here
        object.__setattr__(self, "retention", check_retention("retention", self.retention))
        require_positive("retention_interval", self.retention_interval)
        require_positive("connect_timeout", self.connect_timeout)
        self._check_security()

    def _check_security(self) -> None:
        check_secret_options("password", self.password, self.password_file, self.password_env)
        if self.username is not None and (not isinstance(self.username, str) or not self.username):
            raise ConfigurationError("username must be a non-empty string or None")
        self.tls_settings()

    def tls_settings(self) -> TlsSettings:
        """The TLS options as one checked value (they apply to ``rediss://`` URLs)."""
        return TlsSettings(self.tls_ca, self.tls_cert, self.tls_key, self.tls_verify)

    @property
    def tls_options_given(self) -> bool:
        """Whether any ``tls_*`` option differs from its default (they need a ``rediss://`` URL)."""
        return any(v is not None for v in (self.tls_ca, self.tls_cert, self.tls_key)) or self.tls_verify != "required"

    @property
    def password_given(self) -> bool:
        """Whether a password comes from the config (inline, file or environment)."""
        return any(v is not None for v in (self.password, self.password_file, self.password_env))

    @property
    def effective_heartbeat_interval(self) -> float:
        """Seconds between heartbeats actually used."""
        return self.heartbeat_interval if self.heartbeat_interval is not None else self.lease_timeout / 3


class _RedactedUrl(str):
    """A URL that shows its credentials as ``***`` when repr'd (a config's repr is logged)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(redact_url(str(self)))


_OPTIONS: Final = url_options(RedisConfig, "redis", (("max_age", "retention"), ("max_length", "retention_max_records")))
"""The URL options: every field but the inline password, read by its type (see :mod:`choreograph.core.url_options`)."""
_PARSERS: Final = {**_OPTIONS.readers, **{old: _OPTIONS.readers[new] for old, new in _OPTIONS.aliases.items()}}
"""Every option name a URL accepts (deprecated aliases included), with its reader."""


def parse_url(url: str) -> tuple[str, RedisConfig]:
    """Split ``redis://[user:pass@]host:port/db?option=value`` into a client URL and a config.

    The choreograph options (see :class:`RedisConfig`) are removed from the
    query; anything else is rejected by name. ``rediss://`` selects TLS.
    Secrets need not be in the URL: ``rediss://app@host:6380/0?password_file=/run/secrets/redis``.
    Credentials stay percent-encoded in the client URL, which the client
    decodes exactly once (write ``%2F`` for ``/``, ``%40`` for ``@``, ...).
    """
    parts = split_url(url, "redis")
    if parts.scheme not in {"redis", "rediss"}:
        raise ConfigurationError(f"not a redis URL (expected redis://host:port/db): {redact_url(url)!r}")
    for credential in (parts.username, parts.password):
        if credential is not None:
            try:
                unquote(credential, errors="strict")
            except UnicodeDecodeError:
                raise ConfigurationError(
                    "the credentials in the redis URL are not valid percent-encoded UTF-8"
                ) from None
    if not parts.hostname:
        raise ConfigurationError(f"redis URL needs a host, e.g. redis://localhost:6379/0: {redact_url(url)!r}")
    db = parts.path.strip("/")
    if db and not (db.isascii() and db.isdigit()):
        raise ConfigurationError(f"the redis database in {redact_url(url)!r} must be a number, got {db!r}")
    options = parse_options(_OPTIONS, parts.query)
    client_url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    config = RedisConfig(url=client_url, **options)
    check_url_and_config(client_url, config)
    return client_url, config


def check_url_and_config(url: str, config: RedisConfig) -> None:
    """Raise ConfigurationError if the URL and the config disagree: tls options without ``rediss://``,
    or a user or password given both in the URL and as options."""
    parts = split_url(url, "redis")
    if config.tls_options_given and parts.scheme != "rediss":
        raise ConfigurationError(
            f"tls options need a TLS connection: write rediss:// instead of {parts.scheme}:// ({redact_url(url)})"
        )
    if parts.password is not None and config.password_given:
        raise ConfigurationError("the redis password is given twice (in the URL and as an option); give it once")
    if parts.username and config.username is not None:
        raise ConfigurationError("the redis user is given twice (in the URL and as username=); give it once")
