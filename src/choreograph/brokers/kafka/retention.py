"""Retention of the Kafka broker: ``retention.ms`` on the topics it creates, described for the startup line.

Kafka deletes whole log segments once their newest record is older than the
topic's ``retention.ms``, whether or not every group has read them. Only
topics this broker creates get the setting; topics that exist keep their own
(the cluster's ``log.retention.*`` unless set per topic).
"""

from __future__ import annotations

from choreograph.core.retention import DEFAULT_RETENTION, Retention

from .config import KafkaConfig


def topic_configs(config: KafkaConfig) -> dict[str, str]:
    """Return the topic configs of a data topic this broker creates: ``retention.ms`` (``-1``: forever)."""
    ms = -1 if config.retention is None else round(config.retention * 1000)
    return {"retention.ms": str(ms)}


def describe(config: KafkaConfig) -> Retention:
    """Return the retention of the topics this broker creates."""
    how = (
        "topic retention.ms on topics this broker creates, whole segments deleted whether or not groups have read them"
    )
    return Retention("kafka", config.retention, config.retention == DEFAULT_RETENTION, how)
