"""Broker health figures (M8): what a backend can tell about its server, as plain samples.

A broker that implements :class:`HealthReporter` returns :class:`HealthSample`
values when asked; ``choreograph.observe.broker_health`` turns them into
Prometheus gauges named ``choreograph_broker_<name>`` at each scrape. The
figures are the server's own (memory, clients, operations, JetStream usage,
partition leadership), read through the client connection the broker already
holds or a monitoring endpoint it was configured with — never records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class HealthSample:
    """One figure: ``choreograph_broker_<name>{labels} value``.

    ``name`` is a Prometheus metric name without the prefix (``redis_memory_used_bytes``);
    every sample of one name carries the same label names.
    """

    name: str
    value: float
    help: str
    labels: tuple[tuple[str, str], ...] = ()


@runtime_checkable
class HealthReporter(Protocol):
    """Reports the server's health figures."""

    async def broker_health(self) -> list[HealthSample]:
        """Return the current figures; raise BrokerError when the server cannot be asked."""
        ...
