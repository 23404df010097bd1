"""An App that declares an outbox relay, for ``choreograph run`` (the database URL comes from the environment)."""

from __future__ import annotations

import os

from sqlalchemy.ext.asyncio import create_async_engine

from choreograph import App, Context
from choreograph.outbox import Relay, RelayConfig
from tests.outbox.model import Charged

app = App("orders")
app.declare(
    Relay(create_async_engine(os.environ["CHOREOGRAPH_TEST_OUTBOX_DB"]), app, config=RelayConfig(poll_interval=0.05))
)


@app.service("audit").on(Charged)
async def note(event: Charged, ctx: Context) -> None:
    """A handler, so the App has a consumer beside its relay."""
