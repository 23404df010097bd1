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

The registry: backends are the entry-point group ``choreograph.backends``
(name: the URL scheme; value: ``module:Class``, a class with ``from_url``). The
built-in ones are declared there in ``pyproject.toml`` and also in
:data:`BUILT_IN`, so they work when the package's metadata is missing or stale
(a source checkout, an editable install not reinstalled); a test keeps the two
lists equal. Another distribution adds a backend by declaring an entry point in
that group; it cannot replace a built-in scheme. Everything that lists or opens
backends (``open_broker``, the CLI's scheme list, the capability matrix) reads
:func:`backends`.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import os
from typing import Any, Final

from choreograph.core.broker import Broker
from choreograph.core.errors import ConfigurationError
from choreograph.core.redaction import redact_url

DEFAULT_URL: Final = "sqlite:///./choreograph.db"
ENV_VAR: Final = "CHOREOGRAPH_BROKER"

BUILT_IN: Final = {
    "memory": "choreograph.brokers.memory:MemoryBroker",
    "sqlite": "choreograph.brokers.sqlite:SqliteBroker",
    "nats": "choreograph.brokers.nats:NatsBroker",
    "redis": "choreograph.brokers.redis:RedisBroker",
    "rediss": "choreograph.brokers.redis:RedisBroker",  # Redis over TLS
    "kafka": "choreograph.brokers.kafka:KafkaBroker",
}
"""URL scheme -> ``module:Class`` of the backends shipped with choreograph (as in ``pyproject.toml``)."""

ENTRY_POINT_GROUP: Final = "choreograph.backends"


@functools.cache
def backends() -> dict[str, str]:
    """URL scheme -> ``module:Class`` of every backend: the built-in ones, then installed entry points.

    An entry point naming a built-in scheme is ignored (a plugin cannot take
    over ``sqlite://``). Read once per process; :func:`backends.cache_clear`
    reads the installed distributions again.
    """
    found = dict(BUILT_IN)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name, entry.value)
    return found


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
            + ", ".join(f"{name}://" for name in sorted(backends()))
        )
    known = backends()
    try:
        target = known[scheme]
    except KeyError:
        raise ConfigurationError(
            f"unknown broker scheme {scheme!r} in {redact_url(resolved)!r}; known: "
            + ", ".join(f"{name}://" for name in sorted(known))
        ) from None
    return load_backend(scheme, target)


def load_backend(scheme: str, target: str) -> type[Any]:
    """Import the class ``target`` (``module:Class``) registered for ``scheme``.

    An uninstalled client library stays an ImportError (the extra to install
    is in its message); a target that is not ``module:Class`` or does not
    exist is a ConfigurationError naming the scheme.
    """
    module_name, sep, class_name = target.partition(":")
    if not sep or not module_name or not class_name:
        raise ConfigurationError(f"backend {scheme!r} is registered as {target!r}; expected 'module:Class'")
    module = importlib.import_module(module_name)
    found: Any = module
    for part in class_name.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise ConfigurationError(f"backend {scheme!r} is registered as {target!r}, which does not exist")
    cls: type[Any] = found
    return cls
