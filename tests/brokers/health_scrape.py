"""Shared: publish through an App on a real server, scrape /metrics, return the broker health series."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from choreograph import App, Event
from choreograph.observe.metrics import install_metrics


class Probe(Event, type="health.probe", version=1):
    n: int


async def scrape_health(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Publish a few events to ``url`` and return every ``choreograph_broker_*`` sample of one scrape."""
    app = App("health", broker=url)
    metrics = install_metrics(app)
    try:
        await app.publish_many([(Probe(n=n), f"k{n}") for n in range(20)])
        text = (await metrics.scrape()).decode()
    finally:
        await app.close()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(("choreograph_broker_", "choreograph_publish_")):
                out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def one(scrape: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The value of one series (KeyError if it is absent: absence is a failure, not a zero)."""
    return scrape[(name, frozenset(labels.items()))]
