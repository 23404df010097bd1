"""What a command holds while it runs: an opened broker or a loaded App, closed on the way out.

Every command that talks to the log goes through one of these two context
managers, so each closes what it opened whether it succeeds, fails or is
interrupted::

    async with opened_broker(url) as broker:
        infos = await broker.topics()
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from choreograph.brokers import open_broker
from choreograph.core.broker import Broker
from choreograph.ops.loader import load_app
from choreograph.runtime.app import App


@asynccontextmanager
async def opened_broker(url: str | None) -> AsyncIterator[Broker]:
    """Open the broker named by ``url`` (default ``$CHOREOGRAPH_BROKER``, then the embedded log); close it after.

    Nothing connects until the first call on the broker, so a bad URL raises
    ConfigurationError here and an unreachable server raises BrokerUnavailable
    at first use; both map to exit codes through ``run_async``.
    """
    broker = open_broker(url)
    try:
        yield broker
    finally:
        await broker.close()


@asynccontextmanager
async def opened_app(spec: str, broker: str | None = None) -> AsyncIterator[App]:
    """Load the App named by ``MODULE:APP``, on ``broker`` when given (else its own), and close it after."""
    app = load_app(spec)
    if broker:
        app.configure_broker(broker)
    try:
        yield app
    finally:
        await app.close()
