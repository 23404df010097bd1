"""The payment service's ledger in its own database, written with the transactional outbox (opt-in).

Set ``SHOP_PAYMENT_LEDGER`` to a database URL (``sqlite:///ledger.db``,
``postgresql://...``) before the shop app is imported, and the payment
handler books each captured payment in ``shop_payment_ledger`` in one
transaction with its inbox record and its outgoing event; a relay declared on
the App (run by ``choreograph run``) ships the events. Unset (the default),
nothing here is imported and the demo runs as before. Needs the ``outbox``
extra.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from choreograph import App, Context
from choreograph.runtime.options import HandlerOption

if TYPE_CHECKING:
    from sqlalchemy import Table

LEDGER_ENV = "SHOP_PAYMENT_LEDGER"


class PaymentLedger:
    """The ledger of captured payments, or nothing when ``SHOP_PAYMENT_LEDGER`` is unset."""

    def __init__(self, app: App, url: str | None = None) -> None:
        url = url if url is not None else os.environ.get(LEDGER_ENV)
        self.options: list[HandlerOption] = []
        self._table: Table | None = None
        if not url:
            return
        from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine

        from choreograph.outbox import Outbox, Relay, Transactional, TransactionalHandlers, async_url, install_sync

        metadata = MetaData()
        self._table = Table(
            "shop_payment_ledger",
            metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("order_id", String(64), nullable=False),
            Column("amount_cents", Integer, nullable=False),
            Column("event_id", String(64), nullable=False),
        )
        setup = create_engine(async_url(url).replace("+aiosqlite", "").replace("+psycopg_async", "+psycopg"))
        with setup.begin() as connection:  # idempotent: every worker process runs it at import
            install_sync(connection)
            metadata.create_all(connection)
        setup.dispose()
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(async_url(url))
        outbox = Outbox(app)
        relay = Relay(engine, app)
        outbox.on_commit(relay.wake)
        app.use(TransactionalHandlers(outbox))
        app.declare(relay)
        self.options = [Transactional(engine)]

    async def book(self, ctx: Context, order_id: str, amount_cents: int) -> None:
        """Book a captured payment in the handling's transaction (nothing when the ledger is off)."""
        if self._table is None:
            return
        from sqlalchemy import insert

        from choreograph.outbox import db_session

        await db_session(ctx).execute(
            insert(self._table).values(order_id=order_id, amount_cents=amount_cents, event_id=ctx.envelope.id)
        )
