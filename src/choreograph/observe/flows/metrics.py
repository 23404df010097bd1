"""Export flow figures as Prometheus metrics (prometheus-client is a core dependency).

A collector reads :meth:`Observer.figures` at scrape time, so the numbers are
never stale and nothing is counted twice across restarts::

    registry = CollectorRegistry()
    register_flow_metrics(observer.figures, registry)

or serve them on their own port (``choreograph observe --metrics-port 9465``)
with :func:`serve_flow_metrics`.

Metric names: ``choreograph_flow_instances{flow, state}`` (gauge; state is
started, completed, failed, compensated, compensation_missing,
compensation_failed, in_flight, stuck), ``choreograph_flow_completion_ratio``
and ``choreograph_flow_finality_seconds{flow, quantile}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from choreograph.observe.flows.figures import FlowFigures

_STATES = (
    "started",
    "completed",
    "failed",
    "compensated",
    "compensation_missing",
    "compensation_failed",
    "in_flight",
    "stuck",
)


class FlowCollector:
    """A Prometheus collector over a source of figures (e.g. ``observer.figures``)."""

    def __init__(self, figures: Callable[[], Mapping[str, FlowFigures]]) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Any]:
        """Yield the metric families at scrape time."""
        from prometheus_client.core import GaugeMetricFamily

        instances = GaugeMetricFamily("choreograph_flow_instances", "Flow instances by state", labels=["flow", "state"])
        ratio = GaugeMetricFamily(
            "choreograph_flow_completion_ratio", "completed / (completed + failed + stuck)", labels=["flow"]
        )
        finality = GaugeMetricFamily(
            "choreograph_flow_finality_seconds", "Time from start to final event", labels=["flow", "quantile"]
        )
        for name, figures in self._figures().items():
            for state in _STATES:
                instances.add_metric([name, state], float(getattr(figures, state)))
            if figures.completion_rate is not None:
                ratio.add_metric([name], figures.completion_rate)
            q = figures.time_to_finality
            for label, value in (("0.5", q.p50), ("0.95", q.p95), ("0.99", q.p99)):
                if value is not None:
                    finality.add_metric([name, label], value)
        yield instances
        yield ratio
        yield finality


def register_flow_metrics(figures: Callable[[], Mapping[str, FlowFigures]], registry: Any = None) -> FlowCollector:
    """Register a :class:`FlowCollector` on ``registry`` (default: the global one); return it."""
    from prometheus_client import REGISTRY

    collector = FlowCollector(figures)
    (registry or REGISTRY).register(collector)
    return collector


async def serve_flow_metrics(
    figures: Callable[[], Mapping[str, FlowFigures]], port: int, *, host: str = "127.0.0.1"
) -> asyncio.Server:
    """Serve the flow figures at ``http://host:port/metrics`` (loopback unless ``host`` says otherwise).

    ``choreograph observe --metrics-port`` uses it, so Prometheus can scrape
    ``choreograph_flow_instances`` — what the stuck-flow and missing-compensation
    alerts read. Runs on the current event loop; close the returned server.
    """
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    from choreograph.observe.http_endpoint import TEXT, answer

    registry = CollectorRegistry()
    register_flow_metrics(figures, registry)

    async def route(path: str) -> tuple[int, str, bytes]:
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(registry)
        return 404, TEXT, b"try /metrics\n"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answer(reader, writer, route, timeout=10.0)

    return await asyncio.start_server(handle, host, port)
