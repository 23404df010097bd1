"""Prometheus metrics of a relay: outbox depth and age, throughput, lag, failures.

=================================================  =========  ============================================
metric                                             type       meaning
=================================================  =========  ============================================
choreograph_outbox_depth                           gauge      events staged and not shipped yet
choreograph_outbox_oldest_age_seconds              gauge      age of the oldest of them (0 when none)
choreograph_outbox_shipped_total                   counter    events this relay shipped (throughput)
choreograph_outbox_relay_lag_seconds               histogram  staging to shipping, per event
choreograph_outbox_relay_errors_total              counter    shipping rounds that failed (and will retry)
choreograph_outbox_relay_last_round_timestamp_seconds  gauge  when this relay last finished a round
=================================================  =========  ============================================

Depth and age are read from the database every ``metrics_interval`` by the
relay (a count over the pending index), not per scrape. A stuck relay shows
as a growing ``choreograph_outbox_oldest_age_seconds`` (alert
``OutboxRelayStuck``; runbook ``docs/runbooks/relay-stuck.md``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class RelayMetrics:
    """The relay's series in ``registry`` (the App's metrics registry, or a new one)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.depth = Gauge("choreograph_outbox_depth", "Events staged in the outbox and not shipped yet", registry=r)
        self.oldest_age = Gauge(
            "choreograph_outbox_oldest_age_seconds", "Age of the oldest event not shipped yet (0: none)", registry=r
        )
        self.shipped = Counter("choreograph_outbox_shipped", "Events the relay shipped to the broker", registry=r)
        self.lag = Histogram(
            "choreograph_outbox_relay_lag_seconds",
            "Seconds from staging an event to the relay shipping it",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.errors = Counter("choreograph_outbox_relay_errors", "Relay rounds that failed and will retry", registry=r)
        self.last_round = Gauge(
            "choreograph_outbox_relay_last_round_timestamp_seconds",
            "Unix time the relay last finished a round (shipped or found nothing)",
            registry=r,
        )
