"""Kafka cluster health (M8): what the metadata protocol tells any client.

A client sees no broker memory or request rates (those are the brokers' JMX
metrics, for a JMX exporter); it sees the cluster's shape: the brokers, the
controller, and per topic the partitions, those without a leader and those
whose in-sync replicas are fewer than their replicas (under-replicated). One
Metadata request over the producer's connection per scrape; reads no records.
Internal topics (``__consumer_offsets``...) are left out; the broker's state
topic is in.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer

from choreograph.core.broker_health import HealthSample

from .translation import translated


class KafkaHealth:
    """Mixin of KafkaBroker: :class:`~choreograph.core.broker_health.HealthReporter` from cluster metadata."""

    async def producer(self) -> AIOKafkaProducer:
        raise NotImplementedError  # provided by KafkaBroker

    async def broker_health(self) -> list[HealthSample]:
        """Return broker count, whether a controller is known, and partitions / leaderless / under-replicated."""
        producer = await self.producer()
        async with translated("read the cluster metadata"):
            cluster = await producer.client.fetch_all_metadata()
        return samples_from_metadata(cluster)


def samples_from_metadata(cluster: Any) -> list[HealthSample]:
    """Turn an aiokafka ClusterMetadata into samples (per-topic series labelled ``topic``)."""
    out = [
        HealthSample("kafka_brokers", float(len(cluster.brokers())), "Brokers in the cluster's metadata."),
        HealthSample("kafka_controller_known", 1.0 if cluster.controller is not None else 0.0, "1 if a controller is."),
    ]
    for topic in sorted(cluster.topics(exclude_internal_topics=True)):
        partitions = cluster._partitions.get(topic, {})  # PartitionMetadata per partition (leader, replicas, isr)
        labels = (("topic", topic),)
        leaderless = sum(1 for meta in partitions.values() if meta.leader is None or meta.leader < 0)
        under = sum(1 for meta in partitions.values() if len(meta.isr) < len(meta.replicas))
        out += [
            HealthSample("kafka_topic_partitions", float(len(partitions)), "Partitions of the topic.", labels),
            HealthSample("kafka_partitions_without_leader", float(leaderless), "Partitions with no leader.", labels),
            HealthSample(
                "kafka_partitions_under_replicated", float(under), "Partitions with fewer in-sync replicas.", labels
            ),
        ]
    return out
