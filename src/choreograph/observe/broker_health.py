"""Broker-side metrics of an App: publish latency per topic (F5) and the broker's health figures (M8).

Installed by :func:`choreograph.observe.metrics.install_metrics` into the App's
registry; nothing to call by hand.

=============================================  =========  ===================================
metric                                         type       labels
=============================================  =========  ===================================
choreograph_publish_duration_seconds          histogram  topic (App.publish, publish_envelope,
                                                          publish_many: until the broker acknowledged)
choreograph_publish_failures_total            counter    topic, reason (timeout: the publish
                                                          deadline passed; unavailable; error)
choreograph_broker_health_up                  gauge      (1 if the broker answered the last health
                                                          read; absent for a broker that reports none)
choreograph_broker_<figure>                   gauge      per backend (see docs/observability.md):
                                                          redis_*, nats_jetstream_*, nats_server_*,
                                                          sqlite_*, kafka_*
=============================================  =========  ===================================

Publish latency is the broker's overload signal: a broker that slows down
shows it here before consumers lag. Health figures come from the broker's
:class:`~choreograph.core.broker_health.HealthReporter` at each scrape (bounded
by a timeout; on failure the previous figures are dropped, not kept stale).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from choreograph.core.broker import Broker
from choreograph.core.broker_health import HealthReporter, HealthSample
from choreograph.core.envelope import Envelope
from choreograph.core.errors import BrokerError
from choreograph.runtime.middleware import Publisher
from choreograph.runtime.publishing import PublishFailed, PublishTimeout

logger = logging.getLogger("choreograph.metrics")

PUBLISH_DURATION: Final = "choreograph_publish_duration_seconds"
PUBLISH_FAILURES: Final = "choreograph_publish_failures_total"
HEALTH_UP: Final = "choreograph_broker_health_up"
PREFIX: Final = "choreograph_broker_"

WATCHED: Final = {
    "redis_memory_used_bytes": (),
    "redis_memory_max_bytes": (),
    "redis_connected_clients": (),
    "redis_evicted_keys": (),
    "nats_jetstream_memory_bytes": (),
    "nats_jetstream_storage_bytes": (),
    "nats_jetstream_storage_max_bytes": (),
    "nats_server_connections": ("server",),
    "nats_server_slow_consumers": ("server",),
    "sqlite_file_bytes": (),
    "sqlite_wal_bytes": (),
    "sqlite_wal_frames": (),
    "sqlite_wal_checkpointed_frames": (),
    "kafka_brokers": (),
    "kafka_partitions_without_leader": ("topic",),
    "kafka_partitions_under_replicated": ("topic",),
}
"""Figures the dashboards and alert rules read, and their label names: registered (without samples until a
backend reports them) so every query names a known series. The backends own the full lists (brokers/*/health.py)."""
PUBLISH_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
HEALTH_TIMEOUT: Final = 5.0
"""Seconds a scrape waits for the broker's health figures."""


class HealthFigures(Collector):
    """The last figures a broker reported, as gauge families (a prometheus-client custom collector)."""

    def __init__(self) -> None:
        self.samples: list[HealthSample] | None = None
        """None: never read, or the broker reports no figures; [] after a failed read."""
        self.up: bool | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield ``choreograph_broker_health_up`` and one family per figure name (watched ones even if empty)."""
        if self.up is not None:
            yield GaugeMetricFamily(HEALTH_UP, "1 if the broker answered the last health read.", value=float(self.up))
        reported = set()
        for family in families(self.samples or []):
            reported.add(family.name)
            yield family
        for name, labels in WATCHED.items():
            if PREFIX + name not in reported:
                yield GaugeMetricFamily(PREFIX + name, "Not reported by this broker.", labels=list(labels))


def families(samples: Iterable[HealthSample]) -> Iterator[GaugeMetricFamily]:
    """Group samples by name into gauge families; a sample whose label names differ from its family's is dropped."""
    built: dict[str, tuple[GaugeMetricFamily, tuple[str, ...]]] = {}
    for sample in samples:
        names = tuple(name for name, _ in sample.labels)
        if sample.name not in built:
            family = GaugeMetricFamily(PREFIX + sample.name, sample.help, labels=list(names))
            built[sample.name] = (family, names)
        family, expected = built[sample.name]
        if names == expected:
            family.add_metric([value for _, value in sample.labels], sample.value)
    for family, _ in built.values():
        yield family


class BrokerMetrics:
    """Publish latency and failures (a PublisherMiddleware) and the health collector, in one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.publish_duration = Histogram(
            PUBLISH_DURATION,
            "Time a publish took until the broker acknowledged it (App.publish and friends).",
            ["topic"],
            buckets=PUBLISH_BUCKETS,
            registry=registry,
        )
        self.publish_failures = Counter(
            PUBLISH_FAILURES.removesuffix("_total"),
            "Publishes that failed: timeout (past the publish deadline), unavailable, error.",
            ["topic", "reason"],
            registry=registry,
        )
        self.health = HealthFigures()
        registry.register(self.health)

    def publisher(self, publish: Publisher) -> Publisher:
        """Time each publish call, per topic; count failures by reason (a PublisherMiddleware)."""
        duration, failures = self.publish_duration, self.publish_failures

        async def timed(topic: str, envelopes: list[Envelope]) -> list[Envelope]:
            started = time.perf_counter()
            try:
                sent = await publish(topic, envelopes)
            except (PublishTimeout, TimeoutError, asyncio.CancelledError):
                # the App's deadline cancels the call from outside: it is a timeout, then re-raised as PublishTimeout
                failures.labels(topic, "timeout").inc()
                raise
            except (PublishFailed, OSError):
                failures.labels(topic, "unavailable").inc()
                raise
            except BrokerError:
                failures.labels(topic, "error").inc()
                raise
            duration.labels(topic).observe(time.perf_counter() - started)
            return sent

        return timed

    async def refresh(self, broker: Broker) -> None:
        """Read the broker's health figures (if it reports any), bounded by HEALTH_TIMEOUT."""
        if not isinstance(broker, HealthReporter):
            return
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT):
                samples = await broker.broker_health()
        except (BrokerError, TimeoutError, OSError) as exc:
            logger.warning("metrics scrape could not read the broker's health: %s", exc)
            self.health.up, self.health.samples = False, []
            return
        self.health.up, self.health.samples = True, samples
