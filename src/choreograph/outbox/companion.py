"""Run relays declared on an App next to its consumers (``choreograph run``).

Kept free of SQLAlchemy imports, so ``choreograph run`` can look for relays
in any App without the outbox extra installed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from choreograph.runtime.app import App

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


@runtime_checkable
class Companion(Protocol):
    """Something that runs beside an App's consumers until ``stop`` is set (a relay)."""

    async def run_beside(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; failures inside are the companion's to retry."""
        ...


def companions_of(app: App) -> list[Companion]:
    """Return the companions declared on ``app`` (``app.declare(Relay(engine, app))``)."""
    return [item for item in app.declarations if isinstance(item, Companion)]


@runtime_checkable
class Instrumented(Protocol):
    """A companion that can export its metrics into a registry it is given."""

    def instrument(self, registry: CollectorRegistry) -> None:
        """Export metrics into ``registry`` (unless it already exports them elsewhere)."""
        ...


@contextlib.asynccontextmanager
async def companions_running(app: App, *, registry: CollectorRegistry | None = None) -> AsyncIterator[list[Companion]]:
    """Run ``app``'s declared companions while the block runs; stop them (and wait) when it ends.

    With ``registry`` (the App's metrics registry), companions that can export
    metrics do so there, so one ``/metrics`` serves both.
    """
    stop = asyncio.Event()
    companions = companions_of(app)
    if registry is not None:
        for companion in companions:
            if isinstance(companion, Instrumented):
                companion.instrument(registry)
    tasks = [asyncio.create_task(c.run_beside(stop), name=f"companion:{type(c).__name__}") for c in companions]
    try:
        yield companions
    finally:
        stop.set()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
