"""Child processes the kill -9 tests start: ``python -m tests.outbox.child '<json spec>'``.

Modes:

- ``stage``: stage one event in the outbox, commit, then SIGKILL itself (killed between commit and publish);
- ``ship``: stage one event, commit, run a relay round whose broker SIGKILLs the process right after the
  publish returned (killed between publish and marking the row shipped);
- ``handle``: run a transactional handler (ledger row + one output per input) until every input is in the
  inbox; with ``seed``, SIGKILL itself at a random point of the ``k``-th handling (k random among what is left).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from choreograph import App, Context
from choreograph.core.broker import Broker, Record
from choreograph.core.envelope import Envelope
from choreograph.outbox import Outbox, Relay, RelayConfig, Transactional, TransactionalHandlers, db_session
from choreograph.outbox.tables import inbox
from choreograph.runtime.context import Outcome
from choreograph.runtime.middleware import Handler

from .model import Charged, Moved, ledger

POINTS = ("before_effect", "after_effect", "after_publish", "after_commit")


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class DyingBroker:
    """Forwards publish to ``inner``, then dies: the records are in the log, the outbox row not marked."""

    def __init__(self, inner: Broker) -> None:
        self.inner = inner

    async def publish(self, topic: str, records: Sequence[Record]) -> None:
        await self.inner.publish(topic, records)
        die()


async def stage(spec: dict[str, Any], *, ship: bool) -> None:
    engine = create_async_engine(spec["db"])
    app = App("orders", broker=spec["broker"])
    async with AsyncSession(engine) as session, session.begin():
        envelope = await Outbox(app).publish(session, Moved(key="k", n=1), key="k")
    print(json.dumps({"staged": envelope.id}), flush=True)
    if not ship:
        die()
    # A short lease: on SQLite the relay after the restart waits for this dead relay's lease to expire.
    relay = Relay(engine, DyingBroker(app.broker), config=RelayConfig(lease_timeout=0.5))  # type: ignore[arg-type]
    await relay.ship_once()
    raise SystemExit("the broker should have killed this process")


async def handle(spec: dict[str, Any]) -> None:
    engine = create_async_engine(spec["db"])
    total = int(spec["total"])
    async with engine.connect() as conn:
        done = int((await conn.execute(select(func.count()).select_from(inbox))).scalar_one())
    rng = random.Random(spec.get("seed"))
    kill_at = rng.randint(1, max(1, total - done)) if spec.get("seed") is not None else None
    point = rng.choice(POINTS)
    handled = 0

    app = App("shop", broker=spec["broker"])

    def after_commit(handler: Handler) -> Handler:  # outermost: runs after the transaction committed
        async def watched(envelope: Envelope, ctx: Context) -> None:
            await handler(envelope, ctx)
            if ctx.outcome is Outcome.SUCCESS and handled == kill_at and point == "after_commit":
                die()  # committed, not acknowledged

        return watched

    app.use(after_commit)
    app.use(TransactionalHandlers(Outbox(app)))

    @app.service("payments").on(Moved, options=[Transactional(engine)], concurrency=1, dedupe=spec["dedupe"])
    async def charge(event: Moved, ctx: Context) -> None:
        nonlocal handled
        handled += 1
        here = handled == kill_at
        if here and point == "before_effect":
            die()
        await db_session(ctx).execute(insert(ledger).values(event_id=ctx.envelope.id, amount=event.n))
        if here and point == "after_effect":
            die()
        ctx.publish(Charged(key=event.key, n=event.n))
        if here and point == "after_publish":
            die()

    await app.start()
    try:
        while True:
            async with engine.connect() as conn:
                if int((await conn.execute(select(func.count()).select_from(inbox))).scalar_one()) >= total:
                    break
            await asyncio.sleep(0.05)
    finally:
        await app.close()
        await engine.dispose()


def main() -> None:
    spec = json.loads(sys.argv[1])
    mode = spec["mode"]
    if mode == "handle":
        asyncio.run(handle(spec))
    else:
        asyncio.run(stage(spec, ship=mode == "ship"))


if __name__ == "__main__":
    main()
