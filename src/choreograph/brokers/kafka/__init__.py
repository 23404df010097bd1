"""Kafka broker: ``kafka://host:port[,host:port...]``.

Needs the ``kafka`` extra (aiokafka). See ``docs/backends/kafka.md`` for how
choreograph maps onto topics, partitions, consumer groups and the state topic.
"""

from __future__ import annotations

from choreograph.core.errors import MissingExtraError

try:
    import aiokafka  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    raise MissingExtraError("Kafka broker", "kafka", "aiokafka") from None

from .broker import KafkaBroker
from .config import KafkaConfig
from .subscription import KafkaSubscription

__all__ = ["KafkaBroker", "KafkaConfig", "KafkaSubscription"]
