"""NATS JetStream broker: ``nats://host:port[,host:port...][?option=value&...]``.

Needs the ``nats`` extra (nats-py). Topics map onto streams, partitions onto
subjects, consumer groups onto one durable pull consumer per partition; see
:mod:`choreograph.brokers.nats.naming` and ``docs/backends/nats.md``.
"""

from __future__ import annotations

try:
    import nats  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    from choreograph.core.errors import MissingExtraError

    raise MissingExtraError("NATS broker", "nats", "nats-py") from exc

from choreograph.brokers.nats.broker import NatsBroker
from choreograph.brokers.nats.config import NatsConfig, parse_url

__all__ = ["NatsBroker", "NatsConfig", "parse_url"]
