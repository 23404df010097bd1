"""Broker backends, opened by URL.

=================================  ===========================================
URL                                backend
=================================  ===========================================
``memory://``                      in-process log (tests, the test harness)
``sqlite:///path/to/file.db``      embedded durable log, shared by OS processes
``nats://host:port[,host:port]``   NATS JetStream (extra ``nats``), cluster-ready
``redis://host:port/db``           Redis Streams (extra ``redis``)
``kafka://host:port[,host:port]``  Apache Kafka or a Kafka-protocol broker (extra ``kafka``)
=================================  ===========================================

Each backend lives in its own module and imports only ``choreograph.core`` and
its client library; this module loads them lazily so an uninstalled optional
client costs nothing until its scheme is used.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Final

from choreograph.core.broker import Broker
from choreograph.core.errors import ConfigurationError
from choreograph.core.redaction import redact_url

DEFAULT_URL: Final = "sqlite:///./choreograph.db"
ENV_VAR: Final = "CHOREOGRAPH_BROKER"

_BACKENDS: Final = {
    "memory": ("choreograph.brokers.memory", "MemoryBroker"),
    "sqlite": ("choreograph.brokers.sqlite", "SqliteBroker"),
    "nats": ("choreograph.brokers.nats", "NatsBroker"),
    "redis": ("choreograph.brokers.redis", "RedisBroker"),
    "rediss": ("choreograph.brokers.redis", "RedisBroker"),  # Redis over TLS
    "kafka": ("choreograph.brokers.kafka", "KafkaBroker"),
}


def resolve_url(url: str | None = None) -> str:
    """Return ``url``, else ``$CHOREOGRAPH_BROKER``, else the embedded default."""
    return url or os.environ.get(ENV_VAR) or DEFAULT_URL


def open_broker(url: str | None = None) -> Broker:
    """Create the broker named by ``url`` (see :func:`resolve_url`). Does not connect yet."""
    broker: Broker = broker_class(url).from_url(resolve_url(url))
    return broker


def broker_class(url: str | None = None) -> type[Any]:
    """The broker class that opens ``url`` (see :func:`resolve_url`), without opening anything.

    For capabilities a tool asks of the backend before (or instead of) opening
    a broker, such as :class:`~choreograph.core.local_log.LocalLogBackend`
    and the class's ``capabilities``.
    """
    resolved = resolve_url(url)
    scheme, sep, _ = resolved.partition("://")
    if not sep:
        raise ConfigurationError(
            f"broker URL {redact_url(resolved)!r} has no scheme; use one of: "
            + ", ".join(f"{name}://" for name in sorted(_BACKENDS))
        )
    try:
        module_name, class_name = _BACKENDS[scheme]
    except KeyError:
        raise ConfigurationError(
            f"unknown broker scheme {scheme!r} in {redact_url(resolved)!r}; known: "
            + ", ".join(f"{name}://" for name in sorted(_BACKENDS))
        ) from None
    cls: type[Any] = getattr(importlib.import_module(module_name), class_name)
    return cls
