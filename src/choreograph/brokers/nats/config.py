"""Settings of the NATS JetStream broker and the ``nats://`` URL form."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote

from choreograph.core.errors import ConfigurationError
from choreograph.core.options import (
    MAX_PARTITIONS,
    Parser,
    optional,
    parse_query,
    require_positive,
    require_positive_int,
    split_url,
)
from choreograph.core.redaction import redact_url
from choreograph.core.retention import DEFAULT_RETENTION, check_retention, parse_retention, take_alias

STORAGE_KINDS: Final = ("file", "memory")
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

    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    """Server URLs, without credentials; the client picks one and fails over to the others."""
    user: str | None = None
    """User name sent to every server (with ``password``)."""
    password: str | None = field(default=None, repr=False)
    """Password of ``user``, exactly as the server knows it (decoded once from the URL)."""
    token: str | None = field(default=None, repr=False)
    """Authentication token (``nats://TOKEN@host``), instead of a user and password."""
    prefix: str = "choreo"
    """Namespace of every stream, subject, consumer and bucket this broker creates."""
    partitions: int = 8
    """Partitions (subjects) of a topic created by this broker; existing topics keep theirs."""
    replicas: int = 1
    """Replicas of every stream and bucket (1, or 3/5 on a cluster)."""
    storage: str = "file"
    """``"file"`` (persistent) or ``"memory"`` (lost when the server stops)."""
    retention: float | None = DEFAULT_RETENTION
    """Seconds a record is retained in a topic: the stream's ``max_age`` (default 7 days; ``None`` or ``0``:
    forever). JetStream deletes by age whether or not every group has read a record. Applies to streams
    this broker creates; an existing stream keeps its limits."""
    max_age: float | None = None
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

    def __post_init__(self) -> None:
        if not self.servers or not all(isinstance(s, str) and s for s in self.servers):
            raise ConfigurationError(f"servers must be a non-empty list of URLs, got {self.servers!r}")
        for name in ("user", "password", "token"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigurationError(f"{name} must be a non-empty string or None")
        if self.token is not None and (self.user is not None or self.password is not None):
            raise ConfigurationError("give either a token or a user and password, not both")
        if (self.user is None) != (self.password is None):
            raise ConfigurationError("user and password go together; give both (or a token alone)")
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
        if self.ack_wait < 1.0:
            raise ConfigurationError(f"ack_wait must be at least 1 second, got {self.ack_wait}")

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between a member's heartbeats: a third of ``lease_timeout``."""
        return self.lease_timeout / 3


_PARSERS: dict[str, Parser] = {
    "prefix": str,
    "partitions": int,
    "replicas": int,
    "storage": str.lower,
    "retention": parse_retention,
    "max_age": parse_retention,
    "duplicate_window": float,
    "ack_wait": float,
    "lease_timeout": float,
    "inbox_retention": float,
    "dead_letter_retention": optional(float),
    "prefetch": int,
    "publish_timeout": float,
    "connect_timeout": float,
    "request_timeout": float,
}


def parse_url(url: str) -> NatsConfig:
    """Build a config from ``nats://[user:password@|token@]host:port[,host:port...][?option=value&...]``.

    Every host becomes a server URL; the credentials apply to all of them and
    are percent-decoded exactly once (write ``%2F`` for ``/``, ``%40`` for
    ``@``, ``%3A`` for ``:``, ``%25`` for ``%``), then handed to the client as
    they are, never re-embedded in a URL. Unknown options are rejected by name.
    """
    parts = split_url(url, "nats")
    if parts.scheme != "nats":
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
        servers.append(f"nats://{host}")
    options: dict[str, Any] = {"servers": tuple(servers)}
    if at:
        user, colon, password = credentials.partition(":")
        if colon:
            options["user"], options["password"] = _decoded(user, "user"), _decoded(password, "password")
        else:
            options["token"] = _decoded(user, "token")
    query = parse_query(parts.query, _PARSERS, "nats")
    take_alias(query, "max_age", "nats")
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
