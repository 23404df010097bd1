"""Transactional handlers: effects, inbox row and outgoing events commit in one database transaction."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from choreograph import App, ConfigurationError, Context, RetryPolicy
from choreograph.brokers.memory import MemoryBroker
from choreograph.outbox import Outbox, Relay, Transactional, TransactionalHandlers, db_session, install
from choreograph.outbox.tables import inbox, outbox
from choreograph.testing import TestApp
from tests.conftest import wait_until

from .model import Charged, Moved, business, ledger, read_log


def payments_app(engine: AsyncEngine, *, fail_first: bool = False, dedupe: bool = True) -> App:
    """A payments service whose handler books a ledger row and emits Charged, all in the service's database."""
    app = App("shop")
    app.use(TransactionalHandlers(Outbox(app)))
    payments = app.service("payments")

    @payments.on(
        Moved,
        options=[Transactional(engine)],
        dedupe=dedupe,
        retry=RetryPolicy(immediate=3, delayed=0),
        concurrency=1 if engine.dialect.name == "sqlite" else 16,
    )
    async def charge(event: Moved, ctx: Context) -> None:
        session = db_session(ctx)
        await session.execute(insert(ledger).values(event_id=ctx.envelope.id, amount=event.n))
        ctx.publish(Charged(key=event.key, n=event.n))
        if fail_first and ctx.attempt == 1:
            raise RuntimeError("the first attempt fails after its effects")

    return app


async def ledger_rows(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(ledger.c.event_id).order_by(ledger.c.id))).scalars())


async def count(engine: AsyncEngine, table: object) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]


async def test_effects_inbox_and_outputs_commit_together_and_the_relay_ships_the_outputs(engine: AsyncEngine) -> None:
    # Given a transactional handler
    app = payments_app(engine)
    async with TestApp(app) as test:
        # When three events are handled
        sent = [await test.publish(Moved(key=f"o{n}", n=n), key=f"o{n}") for n in range(3)]
        await test.drain()
        # Then each booked one ledger row and left one inbox row and one outbox row — and the consumer published nothing
        assert sorted(await ledger_rows(engine)) == sorted(env.id for env in sent)
        assert await count(engine, inbox) == 3 and await count(engine, outbox) == 3
        assert await read_log(test.broker, Charged.topic()) == []
        # And the relay ships the outputs with the ids the consumer would have given them
        assert await Relay(engine, test.broker).ship_once() == 3
        charged = await read_log(test.broker, Charged.topic())
        assert sorted(env.causationid or "" for env in charged) == sorted(env.id for env in sent)
        assert all(env.correlationid == env.causationid for env in charged)


async def test_a_redelivered_event_is_a_duplicate_in_the_database_inbox(engine: AsyncEngine) -> None:
    # Given a handler without the broker's inbox, so only the database's can catch a repeat
    app = payments_app(engine, dedupe=False)
    async with TestApp(app) as test:
        first = await test.publish(Moved(key="o1", n=1), key="o1")
        await test.drain()
        # When the very same envelope arrives again
        await app.publish_envelope(Moved.topic(), first)
        await test.drain()
        # Then its effects and outputs exist once, and the repeat counted as a duplicate
        assert await ledger_rows(engine) == [first.id]
        assert await count(engine, outbox) == 1
        assert app.stats()["payments.charge"].duplicates == 1


async def test_a_failed_attempt_rolls_back_its_effects_and_outputs(engine: AsyncEngine) -> None:
    # Given a handler whose first attempt fails after writing and publishing
    app = payments_app(engine, fail_first=True)
    async with TestApp(app) as test:
        sent = await test.publish(Moved(key="o1", n=1), key="o1")
        await test.drain()
    # Then only the successful retry's effects and outputs were kept
    assert await ledger_rows(engine) == [sent.id]
    assert await count(engine, outbox) == 1 and await count(engine, inbox) == 1


def test_the_option_refuses_anything_but_an_async_engine() -> None:
    with pytest.raises(ConfigurationError, match="AsyncEngine"):
        Transactional("sqlite+aiosqlite:///x.db")  # type: ignore[arg-type]


async def test_a_transactional_handler_without_its_middleware_is_refused_at_start(sqlite_url: str) -> None:
    engine = create_async_engine(sqlite_url)
    app = App("shop", broker=MemoryBroker())

    @app.service("payments").on(Moved, options=[Transactional(engine)])
    async def charge(event: Moved, ctx: Context) -> None:
        db_session(ctx)

    with pytest.raises(ConfigurationError, match="TransactionalHandlers"):
        app.check_options()
    await engine.dispose()


async def test_two_workers_handling_one_event_at_once_on_postgresql_apply_it_once(postgres_url: str) -> None:
    # Given two workers (apps on their own brokers) with the same transactional handler on one PostgreSQL database
    engine = create_async_engine(postgres_url)
    await install(engine)
    async with engine.begin() as conn:
        await conn.run_sync(business.create_all)
    release = asyncio.Event()

    def worker() -> App:
        app = App("shop")
        app.use(TransactionalHandlers(Outbox(app)))

        @app.service("payments").on(Moved, options=[Transactional(engine)], dedupe=False)
        async def charge(event: Moved, ctx: Context) -> None:
            await db_session(ctx).execute(insert(ledger).values(event_id=ctx.envelope.id, amount=event.n))
            await release.wait()

        return app

    first, second = worker(), worker()
    try:
        async with TestApp(first) as one, TestApp(second) as two:
            # When the same event reaches both while the first is still inside its transaction
            sent = await one.publish(Moved(key="o1", n=1), key="o1")
            await wait_until(lambda: ledger_pending(engine), timeout=10, what="the first worker inside the handler")
            await second.publish_envelope(Moved.topic(), sent)
            await wait_until(lambda: lock_waits(engine), timeout=10, what="the second worker waiting on the inbox row")
            release.set()
            await one.drain()
            await two.drain()
        # Then the second waited for the first's inbox row and saw a duplicate: one effect
        assert await ledger_rows(engine) == [sent.id]
        assert first.stats()["payments.charge"].handled == 1
        assert second.stats()["payments.charge"].duplicates == 1
    finally:
        await engine.dispose()


async def ledger_pending(engine: AsyncEngine) -> bool:
    """True once a transaction holds an uncommitted inbox row (the row lock of an insert in progress)."""
    async with engine.connect() as conn:
        query = (
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' AND datname = current_database()"
        )
        return int((await conn.execute(text(query))).scalar_one()) >= 1


async def lock_waits(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))).scalar_one()) >= 1
